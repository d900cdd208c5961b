import { setTimeout as sleep } from 'node:timers/promises'
import type { Database } from '../db/database.ts'
import { bindColumnModels } from '../db/runnerSchema/columnModels.ts'
import { type RunnerSchema, runnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'
import type { EmbeddingProvider, EmbedResult } from '../embeddings/provider.ts'
import { errorMessage, ProviderError, TargetError } from '../errors.ts'
import type { Log } from '../log/log.ts'
import type { Plan } from '../plan/schema.ts'
import { retryTransient } from '../retryTransient.ts'
import { claimJobs, completeJobs, deferJobs, failJobs, type Job, queueBacklog, releaseJobs } from './queue.ts'
import { createReconciler } from './reconcile.ts'
import { newMonitor, type WorkerMonitor } from './serveWorkerHttp.ts'
import { beat, MISSED_BEATS, newWorkerId, registerWorker, unregisterWorker } from './workerRegistry.ts'
import { alreadyEmbedded, type WritePolicy, writeEmbeddings } from './writeEmbeddings.ts'

// The background worker (the seed's TaskIQ worker): registers itself, beats (renewing the
// leases of the jobs it holds), waits on LISTEN with a poll as fallback, claims a batch of
// jobs, embeds them outside any transaction, writes each embedding only if the row's text
// still hashes to what it embedded. Many may run at once on several machines; the queue's
// SKIP LOCKED claim keeps them apart. A lost database connection is waited out with
// backoff, never a crash; a provider that refuses for good stops the worker.
//
// Stopping is bounded: on SIGTERM the provider call in flight gets STOP_GRACE_MS to answer
// (its embeddings are then written), after which it is abandoned; the write in flight always
// finishes; the jobs still held are given back at once for other workers.

export const STOP_GRACE_MS = 3000

export interface WorkerOptions {
  db: Database
  plan: Plan
  targets: Target[]
  provider: EmbeddingProvider
  /** As the preflight found: whether the application's triggers are kept quiet on each write. */
  writes: WritePolicy
  signal: AbortSignal
  log: Log
  /** Return when the queue is empty instead of waiting for more. */
  untilEmpty?: boolean
  statsIntervalMs?: number
  workerId?: string
  /** Filled as the worker runs, for /healthz and /metrics. */
  monitor?: WorkerMonitor
  /** Batches in flight at once: lanes that each claim and embed, sharing the connection pool and the provider's rate budget. */
  concurrency?: number
}

export interface WorkerStats {
  embedded: number
  failed: number
  batches: number
}

/** What processing one table's jobs needs, shared by every batch of a worker's run. */
interface Batch {
  options: WorkerOptions
  rs: RunnerSchema
  workerId: string
  stats: WorkerStats
  monitor: WorkerMonitor
  /** Aborted STOP_GRACE_MS after a stop was asked for: provider calls still out are abandoned. */
  embedAbort: AbortSignal
}

/** Each lane of the worker sleeps until a NOTIFY, a stop, or the poll interval, whichever comes first. */
function createWaker(pollMs: number) {
  const sleepers = new Set<() => void>()
  return {
    wake: () => {
      for (const wake of sleepers) wake()
    },
    idle: () =>
      new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer)
          sleepers.delete(wake)
          resolve()
        }
        const timer = setTimeout(wake, pollMs)
        sleepers.add(wake)
      }),
  }
}

export async function runWorker(options: WorkerOptions): Promise<WorkerStats> {
  const { db, plan, provider, signal, log } = options
  const { batch_size, lease_seconds, max_attempts, poll_ms, heartbeat_seconds } = plan.worker
  const rs = runnerSchema(plan.target.runner_schema)
  const workerId = options.workerId ?? newWorkerId()
  const stats: WorkerStats = { embedded: 0, failed: 0, batches: 0 }
  // Waits out any outage of the database while the worker is meant to run.
  const monitor = options.monitor ?? newMonitor()
  const retrying = async <T>(what: string, work: () => Promise<T>) => {
    const result = await retryTransient(work, {
      what: `worker: ${what}`,
      log,
      signal,
      maxRetries: Number.POSITIVE_INFINITY,
      baseMs: 500,
      capMs: 30_000,
      onRetry: () => {
        monitor.databaseOk = false
      },
    })
    monitor.databaseOk = true
    return result
  }
  const claimPolicy = {
    limit: batch_size,
    leaseSeconds: lease_seconds,
    deadAfterSeconds: heartbeat_seconds * MISSED_BEATS,
    maxAttempts: max_attempts,
  }

  const otherModels = await bindColumnModels(db, rs, options.targets, provider)
  if (otherModels.length) {
    throw new TargetError(
      `${otherModels.map((m) => `${m.table_name}.${m.column_name} holds embeddings of ${m.provider} ${m.model}`).join('; ')}; this worker embeds with ${provider.name} ${provider.model}, and one column holds one model's vectors: run the worker with the column's provider`,
    )
  }
  await registerWorker(db, rs, workerId, provider.model)
  const heartbeat = setInterval(() => void beat(db, rs, workerId).catch(() => {}), heartbeat_seconds * 1000)
  const embedAbort = new AbortController()
  const waker = createWaker(poll_ms)
  const onAbort = () => {
    waker.wake()
    setTimeout(() => embedAbort.abort(), STOP_GRACE_MS).unref()
  }
  signal.addEventListener('abort', onAbort)
  const listener = await db.listen(rs.channel, waker.wake)
  monitor.listening = () => listener.connected()
  monitor.refresh = async () => {
    monitor.queue = await queueBacklog(db, rs)
  }
  const batch: Batch = { options, rs, workerId, stats, monitor, embedAbort: embedAbort.signal }
  const reconciler = createReconciler(db, rs, options.targets, plan.worker.reconcile_seconds, plan.worker.reconcile_batch, log)
  const statsLine = createStatsLine(batch, options.statsIntervalMs ?? 10_000)

  /** One lane: claim a batch, embed it, and again; the first lane also sweeps for stale rows when idle. */
  const lane = async (first: boolean) => {
    while (!signal.aborted) {
      const { jobs, deadLettered } = await retrying('claiming jobs', () => claimJobs(db, rs, workerId, claimPolicy))
      stats.failed += deadLettered
      if (jobs.length === 0) {
        if (options.untilEmpty) break
        if (first && (await retrying('reconciling', () => reconciler.step()))) continue // a chunk of the sweep: claim what it queued
        await retrying('logging', () => statsLine())
        await waker.idle()
        continue
      }
      stats.batches++
      const byTable = new Map<string, Job[]>()
      for (const job of jobs) byTable.set(job.table_name, [...(byTable.get(job.table_name) ?? []), job])
      for (const [tableName, tableJobs] of byTable) {
        await retrying(`embedding rows of ${tableName}`, () => processTable(batch, tableName, tableJobs))
      }
      await retrying('logging', () => statsLine())
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, (_, n) => lane(n === 0)))
  } finally {
    clearInterval(heartbeat)
    signal.removeEventListener('abort', onAbort)
    await releaseJobs(db, rs, workerId).catch(() => {})
    await unregisterWorker(db, rs, workerId).catch(() => {})
    await listener.close()
  }
  await statsLine(true).catch(() => {})
  return stats
}

/** Every few seconds a line of throughput and backlog, for whoever watches the worker. */
function createStatsLine({ options, rs, workerId, stats, monitor }: Batch, intervalMs: number) {
  const started = Date.now()
  let lastLog = started
  return async (force = false) => {
    monitor.embedded = stats.embedded
    monitor.failed = stats.failed
    if (!force && Date.now() - lastLog < intervalMs) return
    lastLog = Date.now()
    const backlog = await queueBacklog(options.db, rs)
    monitor.queue = backlog
    const rate = stats.embedded / Math.max(0.001, (Date.now() - started) / 1000)
    options.log(
      `worker ${workerId}: ${stats.embedded} embedded (${rate.toFixed(1)}/s), ${stats.failed} failed; backlog ${backlog.pending}${backlog.oldestSeconds !== null ? `, oldest ${backlog.oldestSeconds.toFixed(1)} s` : ''}`,
      {
        worker: workerId,
        embedded: stats.embedded,
        failed: stats.failed,
        rate_per_second: rate,
        backlog: backlog.pending,
        oldest_pending_seconds: backlog.oldestSeconds,
      },
    )
  }
}

/** One table's claimed jobs: read the texts, embed, write what still matches, complete, fail the rest. */
async function processTable({ options, rs, workerId, stats, monitor, embedAbort }: Batch, tableName: string, jobs: Job[]): Promise<void> {
  const { db, provider, plan } = options
  const target = options.targets.find((t) => t.name === tableName)
  const keys = jobs.map((j) => j.row_key)
  if (!target) {
    const error = `table ${tableName} is not a target of the plan`
    stats.failed += await failJobs(
      db,
      rs,
      workerId,
      tableName,
      keys.map((key) => ({ key, error })),
      1,
    )
    return
  }
  const read = await target.readTexts(db, keys)
  // Rows deleted since, and rows with no text to embed (left NULL, as the backfill leaves them): done.
  const rows = read.filter((r) => r.has_text)
  const toEmbed = new Set(rows.map((r) => r.key))
  await completeJobs(
    db,
    rs,
    workerId,
    tableName,
    keys.filter((k) => !toEmbed.has(k)),
  )
  if (rows.length === 0) return
  let result: EmbedResult
  const called = performance.now()
  try {
    result = await provider.embed(
      rows.map((r) => r.text),
      embedAbort,
    )
  } catch (error) {
    if (embedAbort.aborted) return // stopping: the jobs are given back when the worker stops
    // A row whose embedding of its current text is already written (by another worker, or by
    // this one on an earlier attempt) is done, whatever this attempt met.
    const done = new Set(await alreadyEmbedded(db, rs, target, rows, provider.model))
    await completeJobs(db, rs, workerId, tableName, [...done])
    const failures = rows.filter((r) => !done.has(r.key)).map((r) => ({ key: r.key, error: errorMessage(error) }))
    stats.failed += await failJobs(db, rs, workerId, tableName, failures, plan.worker.max_attempts)
    if (error instanceof ProviderError) throw error // a rejected key or a wrong dimension: stop the worker
    return
  }
  monitor.providerCalls++
  monitor.providerSeconds += (performance.now() - called) / 1000
  const embedded = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
  const { written, busy } = await writeEmbeddings(db, rs, target, embedded, provider.model, options.writes)
  stats.embedded += written.length
  // A row the application holds right now is not waited for: its job comes back in a second.
  const held = new Set(busy)
  await deferJobs(db, rs, workerId, tableName, busy)
  await completeJobs(
    db,
    rs,
    workerId,
    tableName,
    embedded.map((d) => d.key).filter((k) => !held.has(k)),
  )
  const failures = result.failures.map((f) => ({ key: rows[f.index]!.key, error: f.reason }))
  stats.failed += await failJobs(db, rs, workerId, tableName, failures, plan.worker.max_attempts)
}

/** Until the pipeline is installed (or installed again after an uninstall), a worker waits; it never crashes on its absence. */
export async function waitForPipeline(installed: () => Promise<boolean>, signal: AbortSignal, log: Log, pollMs = 5000): Promise<boolean> {
  let said = false
  for (;;) {
    if (await installed()) return true
    if (signal.aborted) return false
    if (!said)
      log('worker: the auto-embedding pipeline is not installed in this database yet; waiting for it (`runner start <plan>` installs it)')
    said = true
    await sleep(pollMs, undefined, { signal }).catch(() => {})
  }
}
