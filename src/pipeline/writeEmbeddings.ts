import { randomUUID } from 'node:crypto'
import type { Database } from '../db/database.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'
import type { Vector } from '../embeddings/provider.ts'

// Writes a batch of embeddings in one statement, in a transaction of its own. A row is
// written only if its text still hashes to what was embedded (an older embedding never
// overwrites a newer text: the newer text is in the queue already, put there by the trigger)
// and only if the column is bound to this model (one model per column, checked in the same
// statement, so a writer started before a change of model cannot slip a vector in). Written
// rows get their metadata (hash, model) and lose any queue entry nobody is working on.
//
// The vectors go as one binary vector[] parameter: with 1,536 floats a row printed as text and
// parsed back by the server, the same write ran at a third of the rate at the backfill's batch
// size, and a binary COPY into a staging table then one UPDATE join at two thirds of it
// (bench/writePaths.ts).
//
// The backfill saves each embedded batch in the runner's schema before it asks the provider
// for the next one (stageEmbeddings), then writes it from there (writeStagedBatch), in a
// transaction that deletes it: a batch embedded is never embedded again, whatever ends the
// run (writeStaged writes what an earlier run left), and its vectors cross the wire once.
//
// A saved batch leaves the staging table when it is written, busy rows included: the backfill
// comes back to those (its cursor lists them) and embeds them again.
//
// The application's triggers do not fire on these writes when the policy says so:
// session_replication_role = replica for this transaction only.

export interface EmbeddedRow {
  key: string
  hash: string
  vector: Vector
}

export interface WritePolicy {
  suppressTriggers: boolean
}

/**
 * The write of rows from `source`, a query giving (key, hash, model, embedding) whose own
 * parameters start at $3 ($1 is the table's name in the queue and metadata, $2 the column);
 * each row comes back with whether it was written, or busy: locked by someone else (the
 * application, mid-transaction), so skipped. Rows are locked in key order and a row somebody
 * holds is never waited for: the application, whose transactions lock rows in their own
 * order, never meets a deadlock against the runner (it waits at most for one short write).
 */
export function writeStatement(rs: RunnerSchema, target: Target, source: string): string {
  return `WITH v AS (${source}
   ), bound AS (
     SELECT m.model FROM ${rs.models} m WHERE m.table_name = $1 AND m.column_name = $2
   ), locked AS (
     SELECT ${target.keyText('t')} AS key FROM ${target.table} t
     WHERE ${target.keyValue('t')} IN (SELECT ${target.keyFromText('v.key')} FROM v)
     ORDER BY ${target.keyOrder('t')} FOR UPDATE OF t SKIP LOCKED
   ), updated AS (
     -- Found again by key, not by the locked version's ctid: a row the application changed (and
     -- committed) since this statement's snapshot is locked in its newest version, which the
     -- UPDATE reaches through its key and re-checks (the text's hash) before it writes.
     UPDATE ${target.table} AS t SET ${target.embedding} = v.embedding::${target.embeddingType}
     FROM v, bound, locked
     WHERE ${target.keyValue('t')} = ${target.keyOf('locked.key')} AND locked.key = v.key AND ${target.hash('t')} = v.hash AND v.model = bound.model
     RETURNING locked.key AS row_key, v.hash, v.model
   ), meta AS (
     INSERT INTO ${rs.meta} (table_name, row_key, content_hash, model, embedded_at)
     SELECT $1, row_key, hash, model, now() FROM updated
     ON CONFLICT (table_name, row_key) DO UPDATE SET content_hash = EXCLUDED.content_hash, model = EXCLUDED.model, embedded_at = now()
   ), dequeued AS (
     DELETE FROM ${rs.queue} q USING updated
     WHERE q.table_name = $1 AND q.row_key = updated.row_key AND q.locked_by IS NULL
   )
   SELECT row_key, false AS busy FROM updated
   UNION ALL
   SELECT v.key, true FROM v
   WHERE v.key NOT IN (SELECT key FROM locked)
     AND EXISTS (SELECT 1 FROM ${target.table} t WHERE ${target.keyValue('t')} = ${target.keyOf('v.key')})`
}

/** What a write did: the keys written, and the keys skipped because someone else held the row. */
export interface WriteResult {
  written: string[]
  busy: string[]
}

/** Runs a write statement in a transaction of its own, under the policy, removing the staged batch it writes. */
export async function runWrite(
  db: Pick<Database, 'transaction'>,
  sql: string,
  params: unknown[],
  policy: WritePolicy,
  staged?: { rs: RunnerSchema; batch: string },
): Promise<WriteResult> {
  return db.transaction(async (tx) => {
    if (policy.suppressTriggers) await tx.exec('SET LOCAL session_replication_role = replica')
    const { rows } = await tx.query<{ row_key: string; busy: boolean }>(sql, params)
    if (staged) await tx.query(`DELETE FROM ${staged.rs.staging} WHERE batch = $1`, [staged.batch])
    return { written: rows.filter((r) => !r.busy).map((r) => r.row_key), busy: rows.filter((r) => r.busy).map((r) => r.row_key) }
  })
}

/** Writes one batch, its vectors sent with the statement (the worker's write). */
export async function writeEmbeddings(
  db: Pick<Database, 'transaction' | 'vectorArray'>,
  rs: RunnerSchema,
  target: Target,
  rows: EmbeddedRow[],
  model: string,
  policy: WritePolicy,
): Promise<WriteResult> {
  if (rows.length === 0) return { written: [], busy: [] }
  const source =
    'SELECT key, hash, $6::text AS model, embedding FROM unnest($3::text[], $4::text[], $5::vector[]) AS v(key, hash, embedding)'
  return runWrite(
    db,
    writeStatement(rs, target, source),
    [
      target.name,
      target.plan.embedding_column,
      rows.map((r) => r.key),
      rows.map((r) => r.hash),
      await db.vectorArray(rows.map((r) => r.vector)),
      model,
    ],
    policy,
  )
}

/** Saves an embedded batch in the runner's schema, committed when this returns; the name writeEmbeddings removes it by. */
export async function stageEmbeddings(
  db: Pick<Database, 'query' | 'vectorArray'>,
  rs: RunnerSchema,
  target: Target,
  rows: EmbeddedRow[],
  model: string,
): Promise<string> {
  const batch = randomUUID()
  await db.query(
    `INSERT INTO ${rs.staging} (batch, table_name, model, keys, hashes, vectors) VALUES ($1, $2, $3, $4::text[], $5::text[], $6::vector[])`,
    [batch, target.name, model, rows.map((r) => r.key), rows.map((r) => r.hash), await db.vectorArray(rows.map((r) => r.vector))],
  )
  return batch
}

/** Writes one saved batch from the staging table (`batch`, the name stageEmbeddings gave it), removing it in the same transaction. */
export async function writeStagedBatch(
  db: Pick<Database, 'transaction'>,
  rs: RunnerSchema,
  target: Target,
  batch: string,
  policy: WritePolicy,
): Promise<WriteResult> {
  const source = `SELECT u.key, u.hash, s.model, u.embedding FROM ${rs.staging} s, unnest(s.keys, s.hashes, s.vectors) AS u(key, hash, embedding) WHERE s.batch = $3`
  return runWrite(db, writeStatement(rs, target, source), [target.name, target.plan.embedding_column, batch], policy, { rs, batch })
}

/**
 * Writes the batches a run that ended early had embedded and saved but not written, oldest
 * first, with the checks of every write (a row whose text changed since, or vectors of a model
 * the column is no longer bound to, are left out); each leaves the staging table as it is written.
 */
export async function writeStaged(
  db: Pick<Database, 'query' | 'transaction'>,
  rs: RunnerSchema,
  target: Target,
  policy: WritePolicy,
): Promise<{ batches: number; written: number; busy: string[] }> {
  const { rows: batches } = await db.query<{ batch: string }>(`SELECT batch FROM ${rs.staging} WHERE table_name = $1 ORDER BY staged_at`, [
    target.name,
  ])
  let written = 0
  const busy: string[] = []
  for (const { batch } of batches) {
    const result = await writeStagedBatch(db, rs, target, batch, policy)
    written += result.written.length
    busy.push(...result.busy)
  }
  return { batches: batches.length, written, busy }
}

/** Of these rows, the keys whose embedding of their current text by this model is written already (the runner's metadata says so). */
export async function alreadyEmbedded(
  db: Pick<Database, 'query'>,
  rs: RunnerSchema,
  target: Target,
  rows: { key: string; hash: string }[],
  model: string,
): Promise<string[]> {
  const { rows: done } = await db.query<{ row_key: string }>(
    `SELECT m.row_key FROM ${rs.meta} m JOIN unnest($2::text[], $3::text[]) AS r(key, hash) ON r.key = m.row_key AND r.hash = m.content_hash
     WHERE m.table_name = $1 AND m.model = $4`,
    [target.name, rows.map((r) => r.key), rows.map((r) => r.hash), model],
  )
  return done.map((r) => r.row_key)
}
