import { setTimeout as sleep } from 'node:timers/promises'
import { z } from 'zod'
import { readPartitions } from '../../db/catalog/readPartitions.ts'
import type { Target } from '../../db/target.ts'
import { Interrupted, WorkError } from '../../errors.ts'
import { queueNullRows } from '../../pipeline/queue.ts'
import { liveWorkers } from '../../pipeline/workerRegistry.ts'
import type { StepContext } from '../step.ts'

// backfill.mode: queue, the backfill a worker fleet shares. Past one machine's worth of provider
// throughput (a rate limit per key, tens of millions of rows), the rows the backfill would embed
// are queued instead, a chunk at a time by key, and every registered `runner worker`, on any
// machine that reaches the database, drains them with what it does for the application's own
// writes: leases renewed by its heartbeat, the column's model checked, each write guarded by the
// text's hash. The batch waits for the queue, says how far it is, and resumes where it stopped:
// queuing is idempotent and its cursor saved after each chunk.

/** What the backfill queued and who drained it; saved in the backfill's cursor. */
export const fleetCursorSchema = z.object({
  /** The database's clock when queuing began: what workers wrote or failed since is this backfill's. */
  since: z.string(),
  /** Last key queued per table or partition; null once all of it is queued. */
  after: z.record(z.string(), z.string().nullable()),
  queued: z.record(z.string(), z.number().int()),
  /** Every worker seen alive while the batch waited. */
  workers: z.array(z.string()),
  waited_seconds: z.number(),
})
export type FleetCursor = z.infer<typeof fleetCursorSchema>

export const fleetOutputSchema = z.object({
  queued: z.number().int(),
  workers: z.array(z.string()),
  waited_seconds: z.number(),
})
export type FleetOutput = z.infer<typeof fleetOutputSchema>

/** Per table: rows the fleet embedded and rows it gave up on, since the backfill began queuing. */
export interface FleetCounts {
  written: Record<string, number>
  failed: Record<string, number>
  failures: { table: string; key: string; reason: string }[]
}

/** What of a batch's context the fleet backfill uses: everything but the checkpoint, which the backfill's own cursor holds. */
type FleetContext = Pick<StepContext, 'db' | 'runnerSchema' | 'plan' | 'targets' | 'signal' | 'log' | 'progress'>

const POLL_MS = 1000
const REPORT_EVERY_MS = 10_000

/** Queues every NULL row with text of each target (partition by partition), from the cursor on. */
async function queueAll(ctx: FleetContext, fleet: FleetCursor, save: () => void): Promise<void> {
  const { db, runnerSchema: rs, plan } = ctx
  for (const t of ctx.targets) {
    const { partitioned, partitions } = await readPartitions(db, t.table)
    const sources = partitioned ? partitions.filter((p) => p.leaf).map((p) => t.partition(p.relation)) : [t]
    for (const source of sources) {
      // An entry of null: this source is all queued.
      if (fleet.after[source.label] === null) continue
      let after = fleet.after[source.label] ?? null
      do {
        const chunk = await queueNullRows(db, rs, t.name, source, after, plan.backfill.queue_chunk)
        after = chunk.last
        fleet.after[source.label] = after
        fleet.queued[t.name] = (fleet.queued[t.name] ?? 0) + chunk.queued
        save()
        if (ctx.signal.aborted) throw new Interrupted()
      } while (after !== null)
    }
  }
}

/** Jobs still queued for the targets. */
async function pendingJobs(ctx: FleetContext): Promise<number> {
  const { rows } = await ctx.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${ctx.runnerSchema.queue} WHERE table_name = ANY($1::text[])`,
    [ctx.targets.map((t) => t.name)],
  )
  return rows[0]!.n
}

/**
 * Queues the rows, then waits until the workers have drained them: progress as the queue
 * shrinks, a line every few seconds with the workers alive, and a stop (resumable) when rows
 * are pending and no worker has been alive for backfill.no_worker_seconds.
 */
export async function backfillThroughFleet(ctx: FleetContext, fleet: FleetCursor, save: () => void): Promise<void> {
  const { plan, log } = ctx
  await queueAll(ctx, fleet, save)
  const queued = Object.values(fleet.queued).reduce((a, b) => a + b, 0)
  log(
    `  ${queued.toLocaleString('en-US')} rows queued for the workers (${Object.entries(fleet.queued)
      .map(([table, n]) => `${table} ${n.toLocaleString('en-US')}`)
      .join(', ')}); waiting for them to drain the queue`,
  )
  const task = ctx.progress.start('backfill (workers)', queued)
  const started = performance.now()
  const waitedBefore = fleet.waited_seconds // by an earlier run of this batch
  const waited = () => waitedBefore + (performance.now() - started) / 1000
  let lastWorkerSeen = performance.now()
  let lastReport = 0
  for (;;) {
    const pending = await pendingJobs(ctx)
    const live = await liveWorkers(ctx.db, ctx.runnerSchema, plan.worker.heartbeat_seconds)
    for (const w of live) if (!fleet.workers.includes(w.worker_id)) fleet.workers.push(w.worker_id)
    task.update(Math.max(0, queued - pending), `${live.length} worker(s)`)
    if (pending === 0) break
    if (live.length) lastWorkerSeen = performance.now()
    else if ((performance.now() - lastWorkerSeen) / 1000 >= plan.backfill.no_worker_seconds) {
      fleet.waited_seconds = waited()
      save()
      throw new WorkError(
        `${pending.toLocaleString('en-US')} rows wait in ${ctx.runnerSchema.queue} and no worker has been alive for ${plan.backfill.no_worker_seconds} s (backfill.mode: queue): start \`runner worker <plan>\` on any machine that reaches the database, then \`runner resume\``,
      )
    }
    if (performance.now() - lastReport >= REPORT_EVERY_MS) {
      lastReport = performance.now()
      log(`  ${pending.toLocaleString('en-US')} of ${queued.toLocaleString('en-US')} rows still queued; ${live.length} worker(s) alive`)
      fleet.waited_seconds = waited()
      save()
    }
    await sleep(POLL_MS, undefined, { signal: ctx.signal }).catch(() => {})
    if (ctx.signal.aborted) {
      fleet.waited_seconds = waited()
      save()
      throw new Interrupted()
    }
  }
  task.finish()
  fleet.waited_seconds = waited()
  save()
}

/** One sentence for the report: how many rows the fleet was given, how many workers drained them, how long it took. */
export function describeFleet(f: FleetOutput): string {
  const hosts = [...new Set(f.workers.map((w) => w.split(':')[0]))]
  return `The NULL rows were queued for the workers (backfill.mode: queue): ${f.queued.toLocaleString('en-US')} rows, drained in ${f.waited_seconds.toFixed(1)} s by ${f.workers.length} worker(s) on ${hosts.length} host(s) (${f.workers.join(', ')}).`
}

/** What the workers wrote and failed for these targets since the backfill began queuing, read from the runner's own records. */
export async function countFleetWork(ctx: FleetContext, targets: Target[], since: string, listed: number): Promise<FleetCounts> {
  const { db, runnerSchema: rs } = ctx
  const names = targets.map((t) => t.name)
  const counts = async (table: string, at: string) => {
    const { rows } = await db.query<{ table_name: string; n: number }>(
      `SELECT table_name, count(*)::int AS n FROM ${table} WHERE table_name = ANY($1::text[]) AND ${at} >= $2::timestamptz GROUP BY table_name`,
      [names, since],
    )
    return Object.fromEntries(rows.map((r) => [r.table_name, r.n]))
  }
  const { rows: failures } = await db.query<{ table: string; key: string; reason: string }>(
    `SELECT table_name AS table, row_key AS key, last_error AS reason FROM ${rs.failed}
     WHERE table_name = ANY($1::text[]) AND failed_at >= $2::timestamptz ORDER BY failed_at LIMIT $3`,
    [names, since, listed],
  )
  return { written: await counts(rs.meta, 'embedded_at'), failed: await counts(rs.failed, 'failed_at'), failures }
}
