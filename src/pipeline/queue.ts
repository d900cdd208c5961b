import type { Queryable } from '../db/database.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'

// Every statement about the queue, in one place (after graphile-worker): claim in a short
// transaction with SKIP LOCKED, counting the attempt at claim time so a crash spends one;
// complete and fail only touch jobs this worker still holds. The diagnosis reads the queue's
// health through here too.

export interface Job {
  table_name: string
  row_key: string
  attempts: number
}

export interface ClaimPolicy {
  limit: number
  leaseSeconds: number
  /** A holder silent this long is dead: its jobs are claimable at once. */
  deadAfterSeconds: number
  maxAttempts: number
}

/** A job is free when nobody holds it, its lease ran out, or its holder stopped beating. */
const abandoned = (rs: RunnerSchema) => `(q.locked_at IS NULL OR q.locked_at < now() - make_interval(secs => $2)
  OR NOT EXISTS (SELECT 1 FROM ${rs.workers} w WHERE w.worker_id = q.locked_by AND w.last_seen > now() - make_interval(secs => $3)))`

/**
 * Claims up to `limit` free jobs, counting the attempt now so that a crash spends it. First,
 * a job whose last attempt never finished (its worker died holding it) and that has no
 * attempt left goes to the failed jobs: a row that kills its worker is not retried forever.
 */
export async function claimJobs(
  db: Queryable,
  rs: RunnerSchema,
  workerId: string,
  policy: ClaimPolicy,
): Promise<{ jobs: Job[]; deadLettered: number }> {
  const { rows: dead } = await db.query<{ n: number }>(
    `WITH exhausted AS (
       DELETE FROM ${rs.queue} q
       WHERE q.locked_by IS NOT NULL AND q.attempts >= $1 AND ${abandoned(rs)}
       RETURNING q.table_name, q.row_key, q.attempts, q.locked_by
     ), moved AS (
       INSERT INTO ${rs.failed} (table_name, row_key, attempts, last_error)
       SELECT table_name, row_key, attempts, 'attempt ' || attempts || ' never finished: its worker ' || locked_by || ' stopped while holding it (a crash or a kill)' FROM exhausted
       ON CONFLICT (table_name, row_key) DO UPDATE SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, failed_at = now()
       RETURNING 1
     ) SELECT count(*)::int AS n FROM moved`,
    [policy.maxAttempts, policy.leaseSeconds, policy.deadAfterSeconds],
  )
  const { rows } = await db.query<Job>(
    `WITH picked AS (
       SELECT q.table_name, q.row_key FROM ${rs.queue} q
       WHERE q.run_at <= now() AND ${abandoned(rs)}
       ORDER BY q.run_at, q.table_name, q.row_key
       LIMIT $4
       FOR UPDATE SKIP LOCKED
     )
     UPDATE ${rs.queue} AS job SET locked_by = $1, locked_at = now(), attempts = job.attempts + 1
     FROM picked WHERE job.table_name = picked.table_name AND job.row_key = picked.row_key
     RETURNING job.table_name, job.row_key, job.attempts`,
    [workerId, policy.leaseSeconds, policy.deadAfterSeconds, policy.limit],
  )
  return { jobs: rows, deadLettered: dead[0]!.n }
}

/** Removes finished jobs this worker holds. A job re-queued meanwhile (the trigger unlocked it) stays. */
export async function completeJobs(db: Queryable, rs: RunnerSchema, workerId: string, tableName: string, keys: string[]): Promise<number> {
  if (keys.length === 0) return 0
  const { rowCount } = await db.query(`DELETE FROM ${rs.queue} WHERE table_name = $1 AND row_key = ANY($2::text[]) AND locked_by = $3`, [
    tableName,
    keys,
    workerId,
  ])
  return rowCount
}

/** A failed attempt: back off exponentially, or move to the failed-jobs table once attempts are spent. */
export async function failJobs(
  db: Queryable,
  rs: RunnerSchema,
  workerId: string,
  tableName: string,
  failures: { key: string; error: string }[],
  maxAttempts: number,
): Promise<number> {
  if (failures.length === 0) return 0
  const { rows } = await db.query<{ moved: number }>(
    `WITH f AS (SELECT * FROM unnest($2::text[], $3::text[]) AS f(row_key, error)),
     retried AS (
       UPDATE ${rs.queue} q SET locked_by = NULL, locked_at = NULL, last_error = f.error,
         run_at = now() + make_interval(secs => least(3600, 2 ^ q.attempts))
       FROM f WHERE q.table_name = $1 AND q.row_key = f.row_key AND q.locked_by = $4 AND q.attempts < $5
       RETURNING q.row_key
     ), exhausted AS (
       DELETE FROM ${rs.queue} q USING f
       WHERE q.table_name = $1 AND q.row_key = f.row_key AND q.locked_by = $4 AND q.attempts >= $5
       RETURNING q.row_key, q.attempts, f.error
     ), moved AS (
       INSERT INTO ${rs.failed} (table_name, row_key, attempts, last_error)
       SELECT $1, row_key, attempts, error FROM exhausted
       ON CONFLICT (table_name, row_key) DO UPDATE SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, failed_at = now()
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM moved)::int AS moved`,
    [tableName, failures.map((f) => f.key), failures.map((f) => f.error), workerId, maxAttempts],
  )
  return rows[0]!.moved
}

/**
 * Gives back jobs whose rows someone else held when the worker came to write them (the
 * application, mid-transaction): not a failure, so the attempt is not spent; tried again shortly.
 */
export async function deferJobs(db: Queryable, rs: RunnerSchema, workerId: string, tableName: string, keys: string[]): Promise<void> {
  if (keys.length === 0) return
  await db.query(
    `UPDATE ${rs.queue} SET locked_by = NULL, locked_at = NULL, attempts = greatest(0, attempts - 1), run_at = now() + interval '1 second'
     WHERE table_name = $1 AND row_key = ANY($2::text[]) AND locked_by = $3`,
    [tableName, keys, workerId],
  )
}

/** Queues rows for the workers (a row already queued keeps its entry). */
export async function queueKeys(db: Queryable, rs: RunnerSchema, tableName: string, keys: string[]): Promise<void> {
  await db.query(`INSERT INTO ${rs.queue} (table_name, row_key) SELECT $1, k FROM unnest($2::text[]) AS k ON CONFLICT DO NOTHING`, [
    tableName,
    keys,
  ])
  await db.query('SELECT pg_notify($1, $2)', [rs.channel, tableName])
}

/** Gives back jobs this worker holds (graceful shutdown). */
export async function releaseJobs(db: Queryable, rs: RunnerSchema, workerId: string): Promise<void> {
  await db.query(`UPDATE ${rs.queue} SET locked_by = NULL, locked_at = NULL, attempts = greatest(0, attempts - 1) WHERE locked_by = $1`, [
    workerId,
  ])
}

/**
 * One chunk of a reconciliation sweep: the next `limit` rows by key after `after`, of which
 * those with no embedding, or whose recorded hash is not their text's, are queued (a row that
 * already failed for good is left to the failed jobs). Returns the last key read (null at the
 * end of the table) and how many were queued.
 */
export async function queueStaleRows(
  db: Queryable,
  rs: RunnerSchema,
  t: Target,
  after: string | null,
  limit: number,
): Promise<{ last: string | null; read: number; queued: number }> {
  const { rows } = await db.query<{ last: string | null; read: number; queued: number }>(
    `WITH chunk AS (
       SELECT ${t.keyText('t')} AS key, t.${t.embedding} IS NULL AS empty, ${t.hash('t')} AS hash, row_number() OVER (ORDER BY ${t.keyOrder('t')}) AS n
       FROM ${t.table} t WHERE $1::text IS NULL OR ${t.keyValue('t')} > ${t.keyOf('$1::text')}
       ORDER BY ${t.keyOrder('t')} LIMIT $2
     ), stale AS (
       SELECT c.key FROM chunk c LEFT JOIN ${rs.meta} m ON m.table_name = $3 AND m.row_key = c.key
       WHERE (c.empty OR m.content_hash <> c.hash)
         AND NOT EXISTS (SELECT 1 FROM ${rs.failed} f WHERE f.table_name = $3 AND f.row_key = c.key)
     ), queued AS (
       INSERT INTO ${rs.queue} (table_name, row_key) SELECT $3, key FROM stale ON CONFLICT DO NOTHING RETURNING 1
     )
     SELECT (SELECT key FROM chunk ORDER BY n DESC LIMIT 1) AS last, (SELECT count(*) FROM chunk)::int AS read, (SELECT count(*) FROM queued)::int AS queued`,
    [after, limit, t.name],
  )
  const r = rows[0]!
  return { last: r.read < limit ? null : r.last, read: r.read, queued: r.queued }
}

/**
 * The backfill's share of the queue (backfill.mode queue): the next `limit` rows of `source` (a
 * table, or one partition of it) with no embedding and text to embed, by key after `after`, are
 * queued under `tableName` for the workers; a failure recorded for one of them by an earlier
 * attempt is cleared, since it is tried again. Returns the last key read (null at the end).
 */
export async function queueNullRows(
  db: Queryable,
  rs: RunnerSchema,
  tableName: string,
  source: Target,
  after: string | null,
  limit: number,
): Promise<{ last: string | null; queued: number }> {
  const { rows } = await db.query<{ last: string | null; read: number; queued: number }>(
    `WITH page AS (
       SELECT ${source.keyText('t')} AS key, row_number() OVER (ORDER BY ${source.keyOrder('t')}) AS n FROM ${source.table} t
       WHERE t.${source.embedding} IS NULL AND ${source.hasText('t')} AND ($3::text IS NULL OR ${source.keyValue('t')} > ${source.keyOf('$3::text')})
       ORDER BY ${source.keyOrder('t')} LIMIT $2
     ), cleared AS (
       DELETE FROM ${rs.failed} f USING page WHERE f.table_name = $1 AND f.row_key = page.key
     ), queued AS (
       INSERT INTO ${rs.queue} (table_name, row_key) SELECT $1, key FROM page ON CONFLICT DO NOTHING RETURNING 1
     )
     SELECT (SELECT key FROM page ORDER BY n DESC LIMIT 1) AS last, (SELECT count(*) FROM page)::int AS read, (SELECT count(*) FROM queued)::int AS queued`,
    [tableName, limit, after],
  )
  const r = rows[0]!
  if (r.queued > 0) await db.query('SELECT pg_notify($1, $2)', [rs.channel, tableName])
  return { last: r.read < limit ? null : r.last, queued: r.queued }
}

export async function queueBacklog(db: Queryable, rs: RunnerSchema): Promise<{ pending: number; oldestSeconds: number | null }> {
  const { rows } = await db.query<{ pending: number; oldest: number | null }>(
    `SELECT count(*)::int AS pending, extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest FROM ${rs.queue}`,
  )
  return { pending: rows[0]!.pending, oldestSeconds: rows[0]!.oldest }
}

export interface QueueHealth {
  pending: number
  oldest_pending_seconds: number | null
  failed: number
}

/** Pending and failed jobs; null when the queue is not installed in this database. */
export async function readQueueHealth(db: Queryable, rs: RunnerSchema): Promise<QueueHealth | null> {
  const { rows: exists } = await db.query<{ queue: boolean; failed: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS queue, to_regclass($2) IS NOT NULL AS failed',
    [rs.queue, rs.failed],
  )
  if (!exists[0]!.queue) return null
  const backlog = await queueBacklog(db, rs)
  const failed = exists[0]!.failed ? (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${rs.failed}`)).rows[0]!.n : 0
  return { pending: backlog.pending, oldest_pending_seconds: backlog.oldestSeconds, failed }
}
