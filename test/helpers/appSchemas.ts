import { quoteIdent, quoteQualified } from '../../src/db/quote.ts'
import type { Database } from '../../src/db/database.ts'
import { chainedBatches } from './plans.ts'

// Application schemas unlike the demo, for the do-no-harm tests: other schema names (quoted,
// mixed case), uuid, identity and text keys, varchar text columns, an updated_at trigger and
// an audit trigger of the application's own, and columns already partly filled with vectors
// nobody recorded the origin of.

export interface AppShape {
  schema: string
  table: string
  key: 'bigint identity' | 'uuid' | 'text'
  textColumns: { name: string; type: 'text' | 'varchar(200)' }[]
  embedding: string
  rows: number
  /** Share of rows that already hold a vector of unknown origin. */
  prefilled: number
  updatedAtTrigger: boolean
  auditTrigger: boolean
}

export const DIMS = 16

/** A plain application table, public.docs(id identity, body), changed where a test says. */
export function shapeOf(overrides: Partial<AppShape> = {}): AppShape {
  return {
    schema: 'public',
    table: 'docs',
    key: 'bigint identity',
    textColumns: [{ name: 'body', type: 'text' }],
    embedding: 'embedding',
    rows: 0,
    prefilled: 0,
    updatedAtTrigger: false,
    auditTrigger: false,
    ...overrides,
  }
}

/** Text columns title and body. */
export const TITLE_AND_BODY: AppShape['textColumns'] = [
  { name: 'title', type: 'text' },
  { name: 'body', type: 'text' },
]

/** A small deterministic generator of shapes, so a failure names the seed that made it. */
export function generateShapes(seed: number, count: number): AppShape[] {
  let state = seed
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)]!
  return Array.from({ length: count }, (_, i) => ({
    schema: pick(['public', 'crm', 'Sales Ops', 'app$fn$data']),
    table: pick(['docs', 'Mixed Case Notes', 'notes;drop', 'notizen_äöü']),
    key: pick(['bigint identity', 'uuid', 'text'] as const),
    textColumns:
      i % 2 === 0
        ? [
            { name: 'title', type: 'varchar(200)' },
            { name: 'Body Text', type: 'text' },
          ]
        : [{ name: 'body', type: 'text' }],
    embedding: pick(['embedding', 'Embedding Vec']),
    rows: 40 + Math.floor(next() * 40),
    prefilled: pick([0, 0.25, 0.5]),
    updatedAtTrigger: next() < 0.8,
    auditTrigger: next() < 0.8,
  }))
}

export const qualified = (s: AppShape) => quoteQualified(s.schema, s.table)

/** Creates the application: its table, its audit log, its triggers, its rows. */
export async function createApp(db: Database, s: AppShape): Promise<void> {
  const t = qualified(s)
  const schema = quoteIdent(s.schema)
  const key =
    s.key === 'bigint identity'
      ? 'id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY'
      : s.key === 'uuid'
        ? 'id uuid PRIMARY KEY DEFAULT gen_random_uuid()'
        : 'id text PRIMARY KEY DEFAULT md5(random()::text)'
  const texts = s.textColumns.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', ')
  await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; CREATE SCHEMA IF NOT EXISTS ${schema};
    CREATE TABLE ${t} (${key}, ${texts}, category text, updated_at timestamptz NOT NULL DEFAULT '2020-01-01', ${quoteIdent(s.embedding)} vector(${DIMS}));
    CREATE TABLE ${schema}.audit_log (at timestamptz DEFAULT clock_timestamp(), op text, row_id text)`)
  if (s.updatedAtTrigger) {
    await db.exec(`CREATE FUNCTION ${schema}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
      CREATE TRIGGER set_updated_at BEFORE UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${schema}.touch()`)
  }
  if (s.auditTrigger) {
    await db.exec(`CREATE FUNCTION ${schema}.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${schema}.audit_log (op, row_id) VALUES (TG_OP, NEW.id::text); RETURN NEW; END $$;
      CREATE TRIGGER audit_changes AFTER INSERT OR UPDATE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${schema}.audit()`)
  }
  const values = s.textColumns.map(
    (_column, j) =>
      `'${j === 0 ? 'note' : 'text'} ' || g || ' about ' || (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models'])[1 + g % 4]`,
  )
  await db.exec(`INSERT INTO ${t} (${s.textColumns.map((c) => quoteIdent(c.name)).join(', ')}, category)
    SELECT ${values.join(', ')}, 'c' || (g % 3) FROM generate_series(1, ${s.rows}) g`)
  // Vectors of unknown origin (norm 11, no model's): written before any runner was here.
  if (s.prefilled > 0) {
    await db.exec(`ALTER TABLE ${t} DISABLE TRIGGER USER;
      UPDATE ${t} SET ${quoteIdent(s.embedding)} = (SELECT array_agg(11.0 / sqrt(${DIMS}))::vector FROM generate_series(1, ${DIMS}))
      WHERE id::text IN (SELECT id::text FROM ${t} ORDER BY id LIMIT ${Math.floor(s.rows * s.prefilled)});
      ALTER TABLE ${t} ENABLE TRIGGER USER`)
  }
}

/** Every column of the application's table but the embedding, as text, by key; and the audit log. */
export async function snapshot(db: Database, s: AppShape): Promise<{ rows: Record<string, string>; audit: number }> {
  const columns = ['id', ...s.textColumns.map((c) => c.name), 'category', 'updated_at'].map(quoteIdent)
  const { rows } = await db.query<{ id: string; row: string }>(
    `SELECT id::text AS id, row(${columns.join(', ')})::text AS row FROM ${qualified(s)}`,
  )
  const audit = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(s.schema)}.audit_log`)
  return { rows: Object.fromEntries(rows.map((r) => [r.id, r.row])), audit: audit.rows[0]!.n }
}

/** Rows in every table outside the runner's schema and the system's: "no row added to any other table". */
export async function rowCounts(db: Database, runnerSchema: string): Promise<Record<string, number>> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS name FROM pg_tables
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema', $1) ORDER BY 1`,
    [runnerSchema],
  )
  const counts: Record<string, number> = {}
  for (const r of rows) counts[r.name] = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${r.name}`)).rows[0]!.n
  return counts
}

export function planFor(s: AppShape, extra: Record<string, unknown> = {}) {
  return {
    id: 'do-no-harm',
    title: 'Do no harm',
    target: {
      database_url_env: 'DATABASE_URL',
      runner_schema: 'runner',
      tables: [
        {
          schema: s.schema,
          table: s.table,
          key: 'id',
          text_columns: s.textColumns.map((c) => c.name),
          embedding_column: s.embedding,
          distance: 'cosine',
        },
      ],
      ...((extra.target as object) ?? {}),
    },
    embedding: {
      provider: 'local',
      model: 'text-embedding-3-small',
      dimensions: DIMS,
      batch_size: 16,
      ...((extra.embedding as object) ?? {}),
    },
    worker: { poll_ms: 100, ...((extra.worker as object) ?? {}) },
    validate: { latency_queries: 10, exact_queries: 5, ...((extra.validate as object) ?? {}) },
    criteria: { relevance_recall_at_k: null, latency_p95_ms_max: null, ...((extra.criteria as object) ?? {}) },
    batches: chainedBatches('diagnose', 'index', 'pipeline', 'backfill', 'validate'),
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => !['target', 'embedding', 'worker', 'validate', 'criteria'].includes(k))),
  }
}
