import { readdirSync, readFileSync, statSync } from 'node:fs'
import { extname, join, relative } from 'node:path'
import type { SourceReference } from './output.ts'

// Reads (only reads) the application's source folder and points at the lines that matter:
// where models declare vector columns, where code writes embeddings or calls an embedding
// API, and where it queries by distance.

const EXTENSIONS = new Set(['.py', '.ts', '.js', '.mjs', '.rb', '.go', '.java', '.kt', '.sql', '.ex', '.php', '.cs'])
const SKIP = /(^|\/)(node_modules|\.git|\.venv|venv|__pycache__|dist|build|\.runner|sessions)(\/|$)/
const MAX_FILE_BYTES = 1_000_000
const MAX_REFERENCES = 500

const PATTERNS: [SourceReference['kind'], RegExp][] = [
  ['declares_vector_column', /\b(Vector|VECTOR|vector|halfvec|HalfVector)\s*\(\s*\d+\s*\)/],
  ['writes_embedding', /\.embedding\s*=[^=]|\bembedding\s*=\s*(await\s+)?[a-zA-Z_]+\(|SET\s+embedding\s*=/i],
  ['calls_embedding_api', /\bembeddings\.create\b|\bcreate_embedding\b|\bget_embeddings?\b|\bembed_(text|query|documents?)\b/],
  ['distance_query', /\b(cosine_distance|l2_distance|max_inner_product|inner_product)\s*\(|<=>|<->|<#>/],
]

export function scanSource(root: string): SourceReference[] {
  const references: SourceReference[] = []
  const entries = readdirSync(root, { recursive: true, encoding: 'utf8' }).sort()
  for (const entry of entries) {
    if (references.length >= MAX_REFERENCES) break
    if (SKIP.test(entry) || !EXTENSIONS.has(extname(entry))) continue
    const path = join(root, entry)
    const stats = statSync(path)
    if (!stats.isFile() || stats.size > MAX_FILE_BYTES) continue
    const lines = readFileSync(path, 'utf8').split('\n')
    lines.forEach((text, i) => {
      for (const [kind, pattern] of PATTERNS) {
        if (pattern.test(text)) {
          references.push({ file: relative(root, path), line: i + 1, kind, text: text.trim().slice(0, 200) })
          break
        }
      }
    })
  }
  return references.slice(0, MAX_REFERENCES)
}
