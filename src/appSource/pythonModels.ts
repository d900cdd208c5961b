import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SKIP_DIRS } from './scanSource.ts'

// Where the application's SQLAlchemy models declare each table: the class, its file and line.
// Read only; a class is found by the `__tablename__ = "..."` inside it.

export interface ModelClass {
  table: string
  className: string
  /** Absolute path. */
  file: string
  /** 1-based line of the `class` statement. */
  line: number
}

export function findModelClasses(root: string): Map<string, ModelClass> {
  const found = new Map<string, ModelClass>()
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.py') && !SKIP_DIRS.test(f))
    .sort()
  for (const relativePath of files) {
    const file = join(root, relativePath)
    let current: { name: string; line: number } | undefined
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((text, i) => {
        const opened = /^class\s+(\w+)\s*[(:]/.exec(text)
        if (opened) current = { name: opened[1]!, line: i + 1 }
        else if (/^\S/.test(text) && !/^[#@)]/.test(text)) current = undefined
        const table = /^\s+__tablename__\s*(?::[^=]+)?=\s*['"]([^'"]+)['"]/.exec(text)?.[1]
        if (table && current && !found.has(table)) found.set(table, { table, className: current.name, file, line: current.line })
      })
  }
  return found
}
