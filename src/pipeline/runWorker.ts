import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Database } from '../db/database.ts'
import type { EmbeddingProvider, EmbedResult } from '../embeddings/provider.ts'
import { errorMessage } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'
import { notifyChannel } from './installPipeline.ts'
import { claimJobs, completeJobs, failJobs, queueBacklog, releaseJobs, type Job } from './queue.ts'
import { resolveTargets, type ResolvedTarget } from './resolveTargets.ts'
import { readTexts, writeEmbeddings } from './writeEmbeddings.ts'

// The background worker (the seed's TaskIQ worker): waits on LISTEN with a poll as fallback,
// claims a batch of jobs, embeds them outside any transaction, writes each embedding only if
// the row's text still hashes to what it embedded. Many may run at once on several machines;
// the queue's SKIP LOCKED claim keeps them apart.

export interface WorkerOptions {
  db: Database
  plan: Plan
  provider: EmbeddingProvider
  signal: AbortSignal
  log(message: string): void
  /** Return when the queue is empty instead of waiting for more. */
  untilEmpty?: boolean
  statsIntervalMs?: number
  workerId?: string
}

export interface WorkerStats {
  embedded: number
  failed: number
  batches: number
}

export async function runWorker(options: WorkerOptions): Promise<WorkerStats> {
  const { db, plan, provider, signal, log } = options
  const { batch_size, lease_seconds, max_attempts, poll_ms } = plan.worker
  const schema = plan.target.runner_schema
  const workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  const targets = new Map<string, ResolvedTarget>((await resolveTargets(db, plan)).map((t) => [t.name, t]))
  const stats: WorkerStats = { embedded: 0, failed: 0, batches: 0 }

  let wake: () => void = () => {}
  const stopListening = await db.listen(notifyChannel(plan), () => wake())
  const onAbort = () => wake()
  signal.addEventListener('abort', onAbort)
  const idle = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, poll_ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  const started = Date.now()
  let lastLog = started
  const logStats = async (force = false) => {
    if (!force && Date.now() - lastLog < (options.statsIntervalMs ?? 10_000)) return
    lastLog = Date.now()
    const backlog = await queueBacklog(db, schema)
    const rate = stats.embedded / Math.max(0.001, (Date.now() - started) / 1000)
    log(
      `worker ${workerId}: ${stats.embedded} embedded (${rate.toFixed(1)}/s), ${stats.failed} failed; backlog ${backlog.pending}${backlog.oldestSeconds !== null ? `, oldest ${backlog.oldestSeconds.toFixed(1)} s` : ''}`,
    )
  }

  try {
    while (!signal.aborted) {
      const jobs = await claimJobs(db, schema, workerId, batch_size, lease_seconds)
      if (jobs.length === 0) {
        if (options.untilEmpty) break
        await logStats()
        await idle()
        continue
      }
      stats.batches++
      const byTable = new Map<string, Job[]>()
      for (const job of jobs) byTable.set(job.table_name, [...(byTable.get(job.table_name) ?? []), job])
      for (const [tableName, tableJobs] of byTable) await processTable(tableName, tableJobs)
      await logStats()
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    await releaseJobs(db, schema, workerId).catch(() => {})
    await stopListening()
  }
  await logStats(true)
  return stats

  async function processTable(tableName: string, jobs: Job[]) {
    const target = targets.get(tableName)
    const keys = jobs.map((j) => j.row_key)
    if (!target) {
      stats.failed += await failJobs(
        db,
        schema,
        workerId,
        tableName,
        keys.map((key) => ({ key, error: `table ${tableName} is not a target of the plan` })),
        1,
      )
      return
    }
    const rows = await readTexts(db, target, keys)
    const present = new Set(rows.map((r) => r.key))
    await completeJobs(
      db,
      schema,
      workerId,
      tableName,
      keys.filter((k) => !present.has(k)),
    ) // deleted rows
    if (rows.length === 0) return
    let result: EmbedResult
    try {
      // Not given the stop signal: SIGTERM lets the batch in flight finish, then the loop ends.
      result = await provider.embed(rows.map((r) => r.text))
    } catch (error) {
      if (signal.aborted) return
      const message = errorMessage(error)
      stats.failed += await failJobs(
        db,
        schema,
        workerId,
        tableName,
        rows.map((r) => ({ key: r.key, error: message })),
        max_attempts,
      )
      if (/rejected the API key|dimensions; \d+ are needed/.test(message)) throw error // permanent: stop the worker
      return
    }
    const done = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
    const written = await writeEmbeddings(db, schema, target, done, provider.model)
    stats.embedded += written.length
    await completeJobs(
      db,
      schema,
      workerId,
      tableName,
      done.map((d) => d.key),
    )
    const failures = result.failures.map((f) => ({ key: rows[f.index]!.key, error: f.reason }))
    stats.failed += await failJobs(db, schema, workerId, tableName, failures, max_attempts)
  }
}
