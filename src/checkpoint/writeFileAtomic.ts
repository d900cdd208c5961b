import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { WorkError } from '../errors.ts'

/** A full disk is the user's to fix, not a bug: say which file, that the old one is intact, and what to do. */
export function diskError(path: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new WorkError(
      `cannot write ${path}: no space left on the device (${code}); the previous version of the file is intact. Free some space, then run \`runner resume\``,
    )
  }
  return error
}

// A state file is either the old version or the new one, never half of each: write a
// temporary file in the same folder, fsync it, rename it over the real one, fsync the folder
// so the rename itself survives a power cut.

export function writeFileAtomic(path: string, content: string): void {
  const folder = dirname(path)
  const temporary = join(folder, `.${basename(path)}.${process.pid}.tmp`)
  try {
    const fd = openSync(temporary, 'w', 0o644)
    try {
      writeSync(fd, content)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(temporary, path)
  } catch (error) {
    try {
      unlinkSync(temporary)
    } catch {}
    throw diskError(path, error)
  }
  const dirFd = openSync(folder, 'r')
  try {
    fsyncSync(dirFd)
  } finally {
    closeSync(dirFd)
  }
}
