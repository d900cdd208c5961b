import type { Queryable } from '../db/database.ts'
import { demoLabels, generateDemo, type DemoLabel } from './generateDemo.ts'

// The seed's application in its broken state: topics, atoms and messages with vector(1536)
// embedding columns that are all NULL, no vector index, no trigger, no queue, no worker.

export const DEMO_DIMENSIONS = 1536

const SCHEMA_SQL = `
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE topics (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  description text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  embedding vector(${DEMO_DIMENSIONS})
);
CREATE TABLE atoms (
  id bigint PRIMARY KEY,
  topic_id bigint NOT NULL REFERENCES topics (id),
  title text NOT NULL,
  content text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  embedding vector(${DEMO_DIMENSIONS})
);
CREATE TABLE messages (
  id bigint PRIMARY KEY,
  topic_id bigint NOT NULL REFERENCES topics (id),
  author text NOT NULL,
  content text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  embedding vector(${DEMO_DIMENSIONS})
);
CREATE INDEX atoms_topic_id_idx ON atoms (topic_id);
CREATE INDEX messages_topic_id_idx ON messages (topic_id);
`

const CHUNK = 5000

export interface DemoInitResult {
  created: boolean
  rows: { topics: number; atoms: number; messages: number }
  labels: DemoLabel[]
}

export async function demoExists(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('topics', 'atoms', 'messages')`,
  )
  return rows[0]!.n > 0
}

/**
 * Creates and fills the demo tables in one transaction, so an interrupted init leaves
 * nothing behind. Refuses to touch a database that already has tables of these names.
 */
export async function initDemo(
  db: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> } & Queryable,
  rowCount: number,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<DemoInitResult> {
  const demo = generateDemo(rowCount)
  const labels = demoLabels(demo)
  if (await demoExists(db)) {
    const { rows } = await db.query<{ topics: number; atoms: number; messages: number }>(
      `SELECT (SELECT count(*)::int FROM topics) AS topics, (SELECT count(*)::int FROM atoms) AS atoms, (SELECT count(*)::int FROM messages) AS messages`,
    )
    return { created: false, rows: rows[0]!, labels }
  }
  const total = demo.topics.length + demo.atoms.length + demo.messages.length
  await db.transaction(async (tx) => {
    await tx.exec(SCHEMA_SQL)
    let done = 0
    const insert = async <R extends Record<string, unknown>>(table: string, columns: [string, string][], rows: R[]) => {
      for (let start = 0; start < rows.length; start += CHUNK) {
        const chunk = rows.slice(start, start + CHUNK)
        // One statement per chunk: unnest of parallel arrays is the fastest multi-row insert
        // that still takes every value as a parameter.
        await tx.query(
          `INSERT INTO ${table} (${columns.map(([c]) => c).join(', ')}) SELECT * FROM unnest(${columns.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ')})`,
          columns.map(([c]) => chunk.map((r) => r[c])),
        )
        done += chunk.length
        onProgress(done, total)
      }
    }
    await insert('topics', [['id', 'bigint'], ['name', 'text'], ['description', 'text']], demo.topics)
    await insert('atoms', [['id', 'bigint'], ['topic_id', 'bigint'], ['title', 'text'], ['content', 'text']], demo.atoms)
    await insert('messages', [['id', 'bigint'], ['topic_id', 'bigint'], ['author', 'text'], ['content', 'text']], demo.messages)
    await tx.exec('ANALYZE topics; ANALYZE atoms; ANALYZE messages;')
  })
  return { created: true, rows: { topics: demo.topics.length, atoms: demo.atoms.length, messages: demo.messages.length }, labels }
}
