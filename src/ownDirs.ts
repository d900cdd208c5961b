import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'

// The runner writes into the application's repository: its working folder (.runner/: the
// embedded database, the word-vector cache, labels) and its session records (sessions/). Each
// carries its own .gitignore when the runner creates it, so neither lands in a commit by
// accident; a team that wants to commit its sessions deletes that file, and it stays deleted.

const IGNORE_ALL = '# Written by runner: its working files and session records, not source.\n*\n'

/** mkdir -p for a path inside the runner's own folders; the folder that holds them gets its .gitignore when created. */
export function makeOwnDir(path: string, ownRoot: string = runnerRootOf(path) ?? path): void {
  const root = resolve(ownRoot)
  const fresh = !existsSync(root)
  mkdirSync(resolve(path), { recursive: true })
  if (fresh) writeFileSync(join(root, '.gitignore'), IGNORE_ALL)
}

/** The `.runner` folder a path lies in, if any: `a/.runner/cache` → `a/.runner`. */
function runnerRootOf(path: string): string | undefined {
  const parts = resolve(path).split(sep)
  const at = parts.lastIndexOf('.runner')
  return at < 0 ? undefined : parts.slice(0, at + 1).join(sep) || sep
}

/** makeOwnDir for the folder that will hold a file. */
export function makeOwnDirFor(file: string): void {
  makeOwnDir(dirname(file))
}
