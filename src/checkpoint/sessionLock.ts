import { openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { UsageError } from '../errors.ts'

// One process drives a session at a time. The lock is a file created exclusively that holds
// the owner's pid. A lock whose owner is gone (killed with SIGKILL, machine restarted) is taken
// over at once: a lock file that only expires after a timeout would make `runner resume`
// right after a crash wait or fail for no reason. Sessions live on one machine's disk, so a
// pid check is exact here.

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function acquireSessionLock(sessionDir: string): () => void {
  const path = join(sessionDir, 'session.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      writeSync(fd, `${process.pid}\n`)
      closeSync(fd)
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path)
        } catch {}
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const owner = Number.parseInt(readFileSync(path, 'utf8'), 10)
      if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
        throw new UsageError(
          `session ${sessionDir} is being driven by another runner process (pid ${owner}); wait for it to finish or stop it`,
        )
      }
      unlinkSync(path) // a stale lock: its owner is gone
    }
  }
  throw new UsageError(`could not take the lock of session ${sessionDir}; another process keeps taking it`)
}
