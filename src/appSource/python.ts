import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

// What the runner writes into a Python application (Alembic revisions, model declarations,
// tests) and how it finds the application's own Python tools.

/** A Python string literal: a JSON string is one. */
export const pythonString = (s: string): string => JSON.stringify(s)

/**
 * A program in the application's virtual environment (a .venv or venv) in `from`, or, with
 * `upward`, in the nearest folder above that has one; with the folder that holds it.
 */
export function findInVirtualEnv(from: string, program: string, upward = false): { path: string; folder: string } | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    for (const venv of ['.venv', 'venv']) {
      const path = join(dir, venv, 'bin', program)
      if (existsSync(path)) return { path, folder: dir }
    }
    if (!upward || dirname(dir) === dir) return undefined
  }
}
