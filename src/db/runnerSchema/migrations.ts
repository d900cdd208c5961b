import { TargetError } from '../../errors.ts'

// The runner's schema, as an ordered list of migrations. Each runs once per target database,
// in a transaction, and is recorded in schema_migrations; a release that changes the queue
// adds a migration here and never edits one that has shipped. `s` is the quoted schema name.
//
// Migration 1 is written with IF NOT EXISTS because releases before the list existed created
// the same tables: on such a database it adopts them instead of failing.

export interface Migration {
  version: number
  description: string
  /** `vectorType`: pgvector's vector type, qualified and quoted, or null without the extension. */
  sql(s: string, database: { vectorType: string | null }): string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'the queue, the failed jobs and the embedding metadata',
    sql: (s) => `
CREATE TABLE IF NOT EXISTS ${s}.embedding_queue (
  table_name text NOT NULL,
  row_key text NOT NULL,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  run_at timestamptz NOT NULL DEFAULT now(),
  attempts int NOT NULL DEFAULT 0,
  locked_by text,
  locked_at timestamptz,
  last_error text,
  PRIMARY KEY (table_name, row_key)
);
CREATE INDEX IF NOT EXISTS embedding_queue_run_at ON ${s}.embedding_queue (run_at);
CREATE TABLE IF NOT EXISTS ${s}.embedding_failures (
  table_name text NOT NULL,
  row_key text NOT NULL,
  attempts int NOT NULL,
  last_error text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_key)
);
-- What produced each embedding: a re-run skips unchanged rows and finds other models' rows.
CREATE TABLE IF NOT EXISTS ${s}.embedding_meta (
  table_name text NOT NULL,
  row_key text NOT NULL,
  content_hash text NOT NULL,
  model text NOT NULL,
  embedded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_key)
);`,
  },
  {
    version: 2,
    description: 'the record of what the runner created, and the model each column is embedded with',
    sql: (s) => `
-- Every object the runner created outside its own tables, so uninstall removes exactly those.
-- A trigger is named with the table it is on (schema_name.on_table); a function or schema by its name.
CREATE TABLE ${s}.created_objects (
  kind text NOT NULL CHECK (kind IN ('schema', 'function', 'trigger')),
  schema_name text NOT NULL,
  name text NOT NULL,
  on_table text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, schema_name, name, on_table)
);
-- One model per column: every writer checks this row before it writes a vector.
CREATE TABLE ${s}.column_models (
  table_name text NOT NULL,
  column_name text NOT NULL,
  provider text NOT NULL,
  model text NOT NULL,
  dimensions int NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, column_name)
);`,
  },
  {
    version: 3,
    description: 'the registry of running workers, with heartbeats',
    sql: (s) => `
-- "Workers running" is a fact about this database: registered here with a fresh heartbeat.
CREATE TABLE ${s}.workers (
  worker_id text PRIMARY KEY,
  host text NOT NULL,
  pid int NOT NULL,
  version text NOT NULL,
  model text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now()
);`,
  },
  {
    version: 4,
    description: 'an index on the jobs workers hold',
    // Every claim looks for held jobs whose worker died (to dead-letter them), and every
    // heartbeat renews its own jobs' leases: without this both read the whole queue, which is
    // largest exactly when a backlog builds. Held jobs are few (workers x batch size).
    sql: (s) => `CREATE INDEX embedding_queue_locked_by ON ${s}.embedding_queue (locked_by) WHERE locked_by IS NOT NULL;`,
  },
  {
    version: 5,
    description: 'the batches the backfill has embedded and not yet written',
    // The backfill saves each embedded batch here (one row, committed) before it asks for the
    // next, and deletes it in the transaction that writes it: a crash loses only the batch being
    // embedded, and the next run writes what it finds here first. UNLOGGED: no WAL for what is
    // only in transit (a server crash empties it; those rows are embedded again). EXTERNAL:
    // floats do not compress, and trying would cost time on every batch.
    sql: (s, { vectorType }) => {
      if (!vectorType) throw new TargetError("the runner's schema needs the vector extension, which this database does not have")
      return `
CREATE UNLOGGED TABLE ${s}.embedding_staging (
  batch text PRIMARY KEY,
  table_name text NOT NULL,
  model text NOT NULL,
  keys text[] NOT NULL,
  hashes text[] NOT NULL,
  vectors ${vectorType}[] NOT NULL,
  staged_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ${s}.embedding_staging ALTER COLUMN vectors SET STORAGE EXTERNAL;`
    },
  },
]

export const LATEST_SCHEMA_VERSION = MIGRATIONS.at(-1)!.version
