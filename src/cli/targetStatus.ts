import { openTarget } from '../db/openTarget.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { UsageError } from '../errors.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { readPipelineStatus } from '../pipeline/readPipelineStatus.ts'

export interface TargetStatusOptions {
  planPath: string
  json: boolean
  maxBacklogSeconds: string
}

/**
 * `runner status <plan>`: the auto-embedding pipeline on the plan's database, read-only.
 * Exit 0 when nothing needs attention, 1 when something does (failed jobs, no live worker, a
 * backlog older than --max-backlog-seconds): a monitoring check as it is.
 */
export async function targetStatus(options: TargetStatusOptions): Promise<number> {
  const maxBacklogSeconds = Number(options.maxBacklogSeconds)
  if (!Number.isFinite(maxBacklogSeconds) || maxBacklogSeconds <= 0) {
    throw new UsageError(`--max-backlog-seconds: expected a positive number, got "${options.maxBacklogSeconds}"`)
  }
  const loaded = loadPlan(options.planPath)
  const { plan } = loaded
  const db = await openTarget(plan, options.json ? () => {} : log)
  try {
    const targets = await resolveTargets(db, plan, loaded.path)
    const status = await db.transaction(
      (tx) =>
        readPipelineStatus(tx, runnerSchema(plan.target.runner_schema), targets, {
          heartbeatSeconds: plan.worker.heartbeat_seconds,
          maxBacklogSeconds,
        }),
      { readOnly: true },
    )
    if (options.json) {
      process.stdout.write(`${JSON.stringify({ target: db.description, ...status }, null, 2)}\n`)
    } else {
      const lines = [
        `${db.description}: runner schema ${status.schema.name} at version ${status.schema.version} (this runner's: ${status.schema.latest})`,
        `queue: ${status.queue.pending} pending${status.queue.oldest_pending_seconds !== null ? `, the oldest for ${status.queue.oldest_pending_seconds.toFixed(1)} s` : ''}, ${status.queue.in_flight} in flight; failed: ${status.failed.count}`,
        ...status.failed.last.map((f) => `  failed ${f.table} key ${f.key} after ${f.attempts} attempts: ${f.error}`),
        ...status.columns.map(
          (c) =>
            `${c.table}.${c.column}: ${c.embedded} of ${c.rows} embedded (${(100 * c.coverage).toFixed(1)}%), model ${c.model ? `${c.model.provider} ${c.model.model}` : 'not recorded yet'}`,
        ),
        ...status.workers.map(
          (w) =>
            `worker ${w.worker_id} (${w.host} pid ${w.pid}, runner ${w.version}, ${w.model}): last seen ${w.seconds_since_seen.toFixed(1)} s ago${w.alive ? '' : ', taken for dead'}`,
        ),
        status.attention.length ? `needs attention:\n${status.attention.map((a) => `  - ${a}`).join('\n')}` : 'nothing needs attention',
      ]
      process.stdout.write(`${lines.join('\n')}\n`)
    }
    return status.attention.length ? 1 : 0
  } finally {
    await db.close()
  }
}
