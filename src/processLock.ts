import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { UsageError } from './errors.ts'

// One process at a time: a session is driven by one process, and the embedded database's
// folder is opened by one process (PGlite has no lock of its own, and two processes in one
// folder corrupt it). The lock is a file created exclusively that holds the owner's pid. A
// lock whose owner is gone (killed with SIGKILL, machine restarted) is taken over at once: a
// lock file that only expires after a timeout would make `runner resume` right after a crash
// wait or fail for no reason. Both live on one machine's disk, so a pid check is exact here.
//
// The takeover itself is guarded: only the process that creates `<lock>.takeover`
// exclusively may remove a stale lock, and it checks again, holding that guard, that the lock
// it removes is still the stale one. Racing processes wait for the guard, then find the lock
// held by the winner. No check-then-act outside the guard.

const RETRY_MS = 25
const TAKEOVER_WAIT_MS = 2000

/** Alive, and not a zombie (a process that has exited but not been reaped still answers kill 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true // no /proc: trust kill 0
  }
}

function tryCreate(path: string): boolean {
  try {
    const fd = openSync(path, 'wx')
    writeSync(fd, `${process.pid}\n`)
    closeSync(fd)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

function ownerOf(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10)
    return Number.isInteger(pid) ? pid : undefined
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/**
 * Takes the lock file at `path` for this process, or throws a UsageError with
 * `heldBy(pid)` when a live process holds it. Returns the release.
 */
export function acquireProcessLock(path: string, heldBy: (pid: number) => string): () => void {
  const guard = `${path}.takeover`
  const release = () => {
    try {
      if (ownerOf(path) === process.pid) unlinkSync(path)
    } catch {}
  }
  const deadline = Date.now() + TAKEOVER_WAIT_MS
  for (;;) {
    if (tryCreate(path)) return release
    const owner = ownerOf(path)
    if (owner !== undefined && owner !== process.pid && isAlive(owner)) {
      throw new UsageError(heldBy(owner))
    }
    // A stale lock (or one that vanished meanwhile): take it over under the guard.
    if (tryCreate(guard)) {
      try {
        const stale = ownerOf(path)
        if (stale === undefined || stale === process.pid || !isAlive(stale)) {
          try {
            unlinkSync(path)
          } catch {}
          if (tryCreate(path)) return release
        }
      } finally {
        unlinkSync(guard)
      }
    } else {
      // Another process holds the guard; a guard whose holder died is stale too.
      const holder = ownerOf(guard)
      if (holder !== undefined && !isAlive(holder)) {
        try {
          unlinkSync(guard)
        } catch {}
      }
    }
    if (Date.now() > deadline) throw new UsageError(`could not take the lock ${path}; another process keeps taking it`)
    sleepSync(RETRY_MS)
  }
}
