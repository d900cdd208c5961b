import type { Queryable } from '../db/database.ts'
import { readColumnModels } from '../db/runnerSchema/columnModels.ts'
import { readSchemaVersion } from '../db/runnerSchema/migrateRunnerSchema.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'
import { readHiddenRows } from '../db/catalog/readRowVisibility.ts'
import { queueBacklog } from './queue.ts'
import { MISSED_BEATS } from './workerRegistry.ts'

// The pipeline's state on a target, read-only: what `runner status <plan>` prints and a
// monitoring check reads (--json). Anything that needs a person is listed in `attention`.

export interface PipelineStatus {
  schema: { name: string; version: number; latest: number }
  queue: { pending: number; oldest_pending_seconds: number | null; in_flight: number }
  failed: { count: number; last: { table: string; key: string; attempts: number; error: string; failed_at: string }[] }
  columns: {
    table: string
    column: string
    rows: number
    embedded: number
    /** Rows with no text to embed, left NULL on purpose: not counted against coverage. */
    no_text: number
    /** Embedded rows over the rows that have text to embed. */
    coverage: number
    /** Row-level security hides rows from this role: the counts are of what it sees, no claim about the table. */
    rows_hidden: boolean
    model: { provider: string; model: string; dimensions: number } | null
  }[]
  workers: { worker_id: string; host: string; pid: number; version: string; model: string; seconds_since_seen: number; alive: boolean }[]
  attention: string[]
}

export async function readPipelineStatus(
  db: Queryable,
  rs: RunnerSchema,
  targets: Target[],
  limits: { heartbeatSeconds: number; maxBacklogSeconds: number },
): Promise<PipelineStatus> {
  const { version, latest } = await readSchemaVersion(db, rs)
  const models = await readColumnModels(db, rs)
  const columns: PipelineStatus['columns'] = []
  const hidden: string[] = []
  for (const t of targets) {
    const { rows, nulls, no_text } = await t.counts(db)
    const rowsHidden = (await readHiddenRows(db, t.table)).length > 0
    if (rowsHidden) hidden.push(t.name)
    const bound = models.find((m) => m.table_name === t.name && m.column_name === t.plan.embedding_column)
    columns.push({
      table: t.name,
      column: t.plan.embedding_column,
      rows,
      embedded: rows - nulls,
      no_text,
      // Of the rows that have text to embed.
      coverage: rows - no_text ? (rows - nulls) / (rows - no_text) : 1,
      model: bound ? { provider: bound.provider, model: bound.model, dimensions: bound.dimensions } : null,
      rows_hidden: rowsHidden,
    })
  }
  const status: PipelineStatus = {
    schema: { name: rs.name, version, latest },
    queue: { pending: 0, oldest_pending_seconds: null, in_flight: 0 },
    failed: { count: 0, last: [] },
    columns,
    workers: [],
    // A count is a claim only where the role sees every row.
    attention: hidden.map(
      (table) =>
        `${table}: row-level security hides rows from this role, so its counts are of what the role sees: run status as a role with BYPASSRLS`,
    ),
  }
  if (version === 0) {
    status.attention.push(`the auto-embedding pipeline is not installed (schema ${rs.name}): run \`runner start <plan>\``)
    return status
  }
  const backlog = await queueBacklog(db, rs)
  const inFlight = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${rs.queue} WHERE locked_by IS NOT NULL`)).rows[0]!.n
  status.queue = { pending: backlog.pending, oldest_pending_seconds: backlog.oldestSeconds, in_flight: inFlight }
  const failed = await db.query<PipelineStatus['failed']['last'][number] & { total: number }>(
    `SELECT table_name AS table, row_key AS key, attempts, last_error AS error, failed_at::text, count(*) OVER ()::int AS total
     FROM ${rs.failed} ORDER BY failed_at DESC LIMIT 5`,
  )
  status.failed = { count: failed.rows[0]?.total ?? 0, last: failed.rows.map(({ total: _total, ...f }) => f) }
  if (version >= 3) {
    const { rows } = await db.query<PipelineStatus['workers'][number]>(
      `SELECT worker_id, host, pid, version, model, extract(epoch FROM now() - last_seen)::float8 AS seconds_since_seen,
              last_seen > now() - make_interval(secs => $1) AS alive
       FROM ${rs.workers} ORDER BY started_at`,
      [limits.heartbeatSeconds * MISSED_BEATS],
    )
    status.workers = rows
  }
  const attention = status.attention
  if (version < latest)
    attention.push(`the runner's schema is at version ${version}, this runner's is ${latest}: run \`runner start <plan>\` to migrate it`)
  if (status.failed.count > 0)
    attention.push(`${status.failed.count} row(s) failed to embed after every attempt (${rs.name}.embedding_failures)`)
  if (!status.workers.some((w) => w.alive)) attention.push('no worker is running: deploy `runner worker <plan>`')
  if ((backlog.oldestSeconds ?? 0) > limits.maxBacklogSeconds) {
    attention.push(
      `the oldest queued row has waited ${Math.round(backlog.oldestSeconds!)} s (more than ${limits.maxBacklogSeconds} s): add workers or look at their logs`,
    )
  }
  return status
}
