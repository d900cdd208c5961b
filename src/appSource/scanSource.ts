import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, extname, join, relative, resolve } from 'node:path'
import type { SourceReference } from '../steps/diagnose/output.ts'

// Reads (only reads) the application's source as an engineer would, and points at the lines
// that matter: where a model declares a vector column, where code reads by distance, where it
// writes an embedding, and where such a write is commented out; embedding functions defined
// and never called; and the create paths that store a row of a model with a vector column
// without giving it an embedding (Python's, by the function's indentation). Paths are
// relative to the repository root (the folder with .git above the source), as a reviewer
// opens them.

const EXTENSIONS = new Set(['.py', '.ts', '.js', '.mjs', '.rb', '.go', '.java', '.kt', '.sql', '.ex', '.php', '.cs'])
export const SKIP_DIRS = /(^|\/)(node_modules|\.git|\.venv|venv|__pycache__|dist|build|\.runner|sessions)(\/|$)/
const MAX_FILE_BYTES = 1_000_000
const MAX_REFERENCES = 500

const COMMENT = /^\s*(#|\/\/|--|\*|\/\*)/
const DECLARES = /\b(Vector|VECTOR|vector|halfvec|HalfVector)\s*\(/
const DECLARATION_CONTEXT = /\b(Column|mapped_column|sa\.Column|ADD\s+COLUMN|CREATE\s+TABLE)\b|^\s*\w+\s+(vector|halfvec)\s*\(\s*\d+/i
const WRITES = /\.embedding\s*=[^=]|\bembedding\s*=\s*(await\s+)?[\w.]+\(|SET\s+"?embedding"?\s*=/i
const CALLS_API = /\bembeddings\.create\b|\bcreate_embedding\b|\bget_embeddings?\b|\bembed_(text|query|documents?)\b/
const DISTANCE = /\b(cosine_distance|l2_distance|max_inner_product|inner_product)\s*\(|<=>|<->|<#>/
const DEFINES =
  /^\s*(?:async\s+)?def\s+(\w*embed\w*)\s*\(|\bfunction\s+(\w*[eE]mbed\w*)\s*\(|\b(?:const|let)\s+(\w*[eE]mbed\w*)\s*=\s*(?:async\s*)?\(/i

/** The repository root above a folder: the nearest folder with .git, else the folder itself. */
export function repositoryRoot(folder: string): string {
  for (let dir = resolve(folder); ; dir = dirname(dir)) {
    if (existsSync(join(dir, '.git'))) return dir
    if (dirname(dir) === dir) return resolve(folder)
  }
}

interface SourceFile {
  path: string
  lines: string[]
}

function readSources(root: string): SourceFile[] {
  const files: SourceFile[] = []
  for (const entry of readdirSync(root, { recursive: true, encoding: 'utf8' }).sort()) {
    if (SKIP_DIRS.test(entry) || !EXTENSIONS.has(extname(entry))) continue
    const path = join(root, entry)
    const stats = statSync(path)
    if (stats.isFile() && stats.size <= MAX_FILE_BYTES) files.push({ path, lines: readFileSync(path, 'utf8').split('\n') })
  }
  return files
}

/** What one line is, if it matters. */
function classify(text: string): SourceReference['kind'] | undefined {
  if (COMMENT.test(text)) return WRITES.test(text) || CALLS_API.test(text) ? 'commented_out_write' : undefined
  if (DECLARES.test(text) && DECLARATION_CONTEXT.test(text)) return 'declares_vector_column'
  if (DISTANCE.test(text)) return 'distance_query'
  if (WRITES.test(text)) return 'writes_embedding'
  if (CALLS_API.test(text)) return 'calls_embedding_api'
  return undefined
}

export function scanSource(source: string): SourceReference[] {
  const root = repositoryRoot(source)
  const files = readSources(resolve(source))
  const references: SourceReference[] = []
  const at = (file: SourceFile, i: number, kind: SourceReference['kind'], extra: { note?: string; table?: string } = {}) =>
    references.push({ file: relative(root, file.path), line: i + 1, kind, text: file.lines[i]!.trim().slice(0, 200), ...extra })

  for (const file of files)
    file.lines.forEach((text, i) => {
      const kind = classify(text)
      if (kind) at(file, i, kind)
    })

  // Embedding functions defined and never called (anywhere, outside comments and their own definition).
  const code = files.flatMap((f) => f.lines.filter((l) => !COMMENT.test(l)))
  for (const file of files)
    file.lines.forEach((text, i) => {
      const defined = DEFINES.exec(text)
      const name = defined?.[1] ?? defined?.[2] ?? defined?.[3]
      if (!name || COMMENT.test(text)) return
      const called = new RegExp(`\\b${name}\\s*\\(`)
      const calls = code.filter((l) => called.test(l) && !DEFINES.test(l)).length
      if (calls === 0) at(file, i, 'uncalled_embedding_function', { note: `${name} is defined and never called` })
    })

  for (const created of findCreatesWithoutEmbedding(files))
    at(created.file, created.index, 'create_without_embedding', { note: created.note, table: created.table })
  return references.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line).slice(0, MAX_REFERENCES)
}

/** Python classes that declare a vector column: class name → its table (from __tablename__, when it has one). */
function vectorModels(files: SourceFile[]): Map<string, string | undefined> {
  const models = new Map<string, string | undefined>()
  for (const file of files.filter((f) => f.path.endsWith('.py'))) {
    let current: string | undefined
    let table: string | undefined
    let hasVector = false
    const close = () => {
      if (current && hasVector) models.set(current, table)
    }
    for (const text of file.lines) {
      const opened = /^class\s+(\w+)\s*[(:]/.exec(text)
      if (opened || (/^\S/.test(text) && !/^[#@)]/.test(text))) {
        close()
        current = opened?.[1]
        table = undefined
        hasVector = false
        continue
      }
      table ??= /^\s+__tablename__\s*(?::[^=]+)?=\s*['"]([^'"]+)['"]/.exec(text)?.[1]
      if (!COMMENT.test(text) && DECLARES.test(text) && DECLARATION_CONTEXT.test(text)) hasVector = true
    }
    close()
  }
  return models
}

/**
 * Python functions that build a model with a vector column, store it (add, commit, save,
 * insert), and give it no embedding in the same function: the create path the seed's bug was.
 */
function findCreatesWithoutEmbedding(files: SourceFile[]): { file: SourceFile; index: number; note: string; table?: string }[] {
  const models = vectorModels(files)
  if (models.size === 0) return []
  const constructs = new RegExp(`\\b(${[...models.keys()].join('|')})\\s*\\(`)
  const found: { file: SourceFile; index: number; note: string; table?: string }[] = []
  for (const file of files.filter((f) => f.path.endsWith('.py'))) {
    file.lines.forEach((text, start) => {
      const def = /^(\s*)(?:async\s+)?def\s+(\w+)\s*\(/.exec(text)
      if (!def) return
      const indent = def[1]!.length
      let end = start + 1
      while (end < file.lines.length && (file.lines[end]!.trim() === '' || file.lines[end]!.search(/\S/) > indent)) end++
      const body = file.lines.slice(start + 1, end)
      const built = body.findIndex((l) => !COMMENT.test(l) && constructs.test(l))
      if (built < 0) return
      const stores = body.some((l) => !COMMENT.test(l) && /\.(add|add_all|commit|save|insert|flush)\s*\(/.test(l))
      const writes = body.some((l) => !COMMENT.test(l) && WRITES.test(l))
      if (!stores || writes) return
      const model = constructs.exec(body[built]!)![1]!
      const table = models.get(model)
      const commented = body.findIndex((l) => COMMENT.test(l) && (WRITES.test(l) || CALLS_API.test(l)))
      found.push({
        file,
        index: start + 1 + built,
        table,
        note: `${def[2]} stores ${model}${table ? ` (table ${table})` : ''} without an embedding${commented >= 0 ? `; its embedding write at line ${start + 1 + commented + 1} is commented out` : ''}`,
      })
    })
  }
  return found
}
