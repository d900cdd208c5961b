import type { Database } from '../db/database.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'

// Writes a batch of embeddings in one statement, in a transaction of its own. A row is
// written only if its text still hashes to what was embedded (an older embedding never
// overwrites a newer text: the newer text is in the queue already, put there by the trigger)
// and only if the column is bound to this model (one model per column, checked in the same
// statement, so a writer started before a change of model cannot slip a vector in). Written
// rows get their metadata (hash, model) and lose any queue entry nobody is working on.
//
// The application's triggers do not fire on these writes when the policy says so:
// session_replication_role = replica for this transaction only.

export interface EmbeddedRow {
  key: string
  hash: string
  vector: number[]
}

export interface WritePolicy {
  suppressTriggers: boolean
}

export async function writeEmbeddings(
  db: Pick<Database, 'transaction'>,
  rs: RunnerSchema,
  target: Target,
  rows: EmbeddedRow[],
  model: string,
  policy: WritePolicy,
): Promise<string[]> {
  if (rows.length === 0) return []
  return db.transaction(async (tx) => {
    if (policy.suppressTriggers) await tx.exec('SET LOCAL session_replication_role = replica')
    const { rows: written } = await tx.query<{ row_key: string }>(
      `WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS v(key, hash, embedding)
       ), bound AS (
         SELECT 1 FROM ${rs.models} m WHERE m.table_name = $4 AND m.column_name = $6 AND m.model = $5
       ), updated AS (
         UPDATE ${target.table} AS t SET ${target.embedding} = v.embedding::${target.embeddingType}
         FROM v
         WHERE t.${target.key} = v.key::${target.keyType} AND ${target.hash('t')} = v.hash AND EXISTS (SELECT 1 FROM bound)
         RETURNING t.${target.key}::text AS row_key, v.hash
       ), meta AS (
         INSERT INTO ${rs.meta} (table_name, row_key, content_hash, model, embedded_at)
         SELECT $4, row_key, hash, $5, now() FROM updated
         ON CONFLICT (table_name, row_key) DO UPDATE SET content_hash = EXCLUDED.content_hash, model = EXCLUDED.model, embedded_at = now()
       ), dequeued AS (
         DELETE FROM ${rs.queue} q USING updated
         WHERE q.table_name = $4 AND q.row_key = updated.row_key AND q.locked_by IS NULL
       )
       SELECT row_key FROM updated`,
      [
        rows.map((r) => r.key),
        rows.map((r) => r.hash),
        rows.map((r) => `[${r.vector.join(',')}]`),
        target.name,
        model,
        target.plan.embedding_column,
      ],
    )
    return written.map((r) => r.row_key)
  })
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
