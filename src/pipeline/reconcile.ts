import type { Database } from '../db/database.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'
import type { Log } from '../log/log.ts'
import { queueStaleRows } from './queue.ts'

// Reconciliation: nothing stays stale forever, whatever bypassed the capture trigger. Every
// interval the worker sweeps each target table by key, one chunk at a time and only while it
// has no job to do, so the sweep costs one short statement between batches, never a long scan.

export interface Reconciler {
  /** Does one chunk when a sweep is due; false when there was nothing to do. */
  step(): Promise<boolean>
}

export function createReconciler(
  db: Database,
  rs: RunnerSchema,
  targets: Target[],
  everySeconds: number | null,
  batch: number,
  log: Log,
): Reconciler {
  let dueAt = Date.now() + (everySeconds ?? 0) * 1000
  let table = 0
  let after: string | null = null
  let sweep = { read: 0, queued: 0, startedAt: 0 }
  return {
    async step() {
      if (everySeconds === null || targets.length === 0 || Date.now() < dueAt) return false
      if (sweep.startedAt === 0) sweep.startedAt = Date.now()
      const chunk = await queueStaleRows(db, rs, targets[table]!, after, batch)
      sweep.read += chunk.read
      sweep.queued += chunk.queued
      after = chunk.last
      if (after === null) table++
      if (table === targets.length) {
        const seconds = (Date.now() - sweep.startedAt) / 1000
        log(`worker: reconciliation read ${sweep.read} rows in ${seconds.toFixed(1)} s and queued ${sweep.queued} that were stale`, {
          reconciled_rows: sweep.read,
          queued: sweep.queued,
          seconds,
        })
        table = 0
        sweep = { read: 0, queued: 0, startedAt: 0 }
        dueAt = Date.now() + everySeconds * 1000
      }
      return true
    },
  }
}
