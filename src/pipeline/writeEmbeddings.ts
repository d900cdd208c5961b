import type { Queryable } from '../db/database.ts'
import { quoteIdent } from '../db/quote.ts'
import { QUEUE_TABLE } from '../db/runnerObjects.ts'
import { META_TABLE } from './installPipeline.ts'
import type { ResolvedTarget } from './resolveTargets.ts'

// Writes a batch of embeddings in one statement. A row is written only if its text still
// hashes to what was embedded: an older embedding never overwrites a newer text (the newer
// text is in the queue already, put there by the trigger). Written rows get their metadata
// (hash, model) and lose any queue entry nobody is working on, in the same statement.

export interface EmbeddedRow {
  key: string
  hash: string
  vector: number[]
}

export async function writeEmbeddings(
  db: Queryable,
  schema: string,
  target: ResolvedTarget,
  rows: EmbeddedRow[],
  model: string,
): Promise<string[]> {
  if (rows.length === 0) return []
  const s = quoteIdent(schema)
  const { rows: written } = await db.query<{ row_key: string }>(
    `WITH v AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS v(key, hash, embedding)
     ), updated AS (
       UPDATE ${target.table} AS t SET ${target.embedding} = v.embedding::${target.embeddingType}
       FROM v
       WHERE t.${target.key} = v.key::${target.keyType} AND ${target.hash('t')} = v.hash
       RETURNING t.${target.key}::text AS row_key, v.hash
     ), meta AS (
       INSERT INTO ${s}.${META_TABLE} (table_name, row_key, content_hash, model, embedded_at)
       SELECT $4, row_key, hash, $5, now() FROM updated
       ON CONFLICT (table_name, row_key) DO UPDATE SET content_hash = EXCLUDED.content_hash, model = EXCLUDED.model, embedded_at = now()
     ), dequeued AS (
       DELETE FROM ${s}.${QUEUE_TABLE} q USING updated
       WHERE q.table_name = $4 AND q.row_key = updated.row_key AND q.locked_by IS NULL
     )
     SELECT row_key FROM updated`,
    [rows.map((r) => r.key), rows.map((r) => r.hash), rows.map((r) => `[${r.vector.join(',')}]`), target.name, model],
  )
  return written.map((r) => r.row_key)
}

/** The current text and its hash for these keys (rows that no longer exist are absent). */
export async function readTexts(
  db: Queryable,
  target: ResolvedTarget,
  keys: string[],
): Promise<{ key: string; text: string; hash: string }[]> {
  const { rows } = await db.query<{ key: string; text: string; hash: string }>(
    `SELECT ${target.key}::text AS key, ${target.text()} AS text, ${target.hash()} AS hash FROM ${target.table} WHERE ${target.key} = ANY($1::${target.keyType}[])`,
    [keys],
  )
  return rows
}
