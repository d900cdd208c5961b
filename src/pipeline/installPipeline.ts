import type { Queryable } from '../db/database.ts'
import { quoteIdent, quoteLiteral } from '../db/quote.ts'
import { FAILED_TABLE, QUEUE_TABLE } from '../db/runnerObjects.ts'
import type { Plan } from '../plan/schema.ts'
import { targetSql } from './targetSql.ts'

// The capture half of the auto-embedding pipeline, in the writer's own transaction: a BEFORE
// trigger on INSERT and on UPDATE OF the text columns sets the stale embedding to NULL, queues
// the row's key (one entry per row: a repeat change updates it) and NOTIFYs the workers.
// Unchanged text queues nothing; DELETE removes the queued entry. Everything lives in the
// plan's runner_schema, so `runner pipeline uninstall` removes it in one go.

export const META_TABLE = 'embedding_meta'

export function notifyChannel(plan: Plan): string {
  return `${plan.target.runner_schema}_embedding`
}

export function schemaSql(plan: Plan): string {
  const s = quoteIdent(plan.target.runner_schema)
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.${QUEUE_TABLE} (
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
CREATE INDEX IF NOT EXISTS ${QUEUE_TABLE}_run_at ON ${s}.${QUEUE_TABLE} (run_at);
CREATE TABLE IF NOT EXISTS ${s}.${FAILED_TABLE} (
  table_name text NOT NULL,
  row_key text NOT NULL,
  attempts int NOT NULL,
  last_error text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_key)
);
-- What produced each embedding: a re-run skips unchanged rows and finds other models' rows.
CREATE TABLE IF NOT EXISTS ${s}.${META_TABLE} (
  table_name text NOT NULL,
  row_key text NOT NULL,
  content_hash text NOT NULL,
  model text NOT NULL,
  embedded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_key)
);`
}

export function triggerSql(plan: Plan, index: number): string {
  const t = plan.target.tables[index]!
  const sql = targetSql(t)
  const s = quoteIdent(plan.target.runner_schema)
  const name = quoteLiteral(sql.name)
  const changed = t.text_columns.map((c) => `NEW.${quoteIdent(c)} IS DISTINCT FROM OLD.${quoteIdent(c)}`).join(' OR ')
  const trigger = quoteIdent('runner_enqueue_embedding')
  const deleteTrigger = quoteIdent('runner_dequeue_embedding')
  return `
CREATE OR REPLACE FUNCTION ${s}.${sql.functionName}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${s}.${QUEUE_TABLE} WHERE table_name = ${name} AND row_key = OLD.${sql.key}::text;
    DELETE FROM ${s}.${META_TABLE} WHERE table_name = ${name} AND row_key = OLD.${sql.key}::text;
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND NOT (${changed}) THEN
    RETURN NEW; -- the text did not change: the embedding is still right
  END IF;
  IF TG_OP = 'INSERT' AND NEW.${sql.embedding} IS NOT NULL THEN
    RETURN NEW; -- the writer brought its own embedding
  END IF;
  NEW.${sql.embedding} := NULL;
  INSERT INTO ${s}.${QUEUE_TABLE} AS q (table_name, row_key) VALUES (${name}, NEW.${sql.key}::text)
  ON CONFLICT (table_name, row_key) DO UPDATE
    SET enqueued_at = now(), run_at = now(), attempts = 0, locked_by = NULL, locked_at = NULL, last_error = NULL;
  PERFORM pg_notify(${quoteLiteral(notifyChannel(plan))}, ${name});
  RETURN NEW;
END
$fn$;
DROP TRIGGER IF EXISTS ${trigger} ON ${sql.table};
CREATE TRIGGER ${trigger} BEFORE INSERT OR UPDATE OF ${sql.textColumns} ON ${sql.table}
  FOR EACH ROW EXECUTE FUNCTION ${s}.${sql.functionName}();
DROP TRIGGER IF EXISTS ${deleteTrigger} ON ${sql.table};
CREATE TRIGGER ${deleteTrigger} AFTER DELETE ON ${sql.table}
  FOR EACH ROW EXECUTE FUNCTION ${s}.${sql.functionName}();`
}

/** Idempotent: CREATE ... IF NOT EXISTS, CREATE OR REPLACE, and triggers dropped and created in one transaction. */
export async function installPipeline(db: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }, plan: Plan): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.exec(schemaSql(plan))
    for (let i = 0; i < plan.target.tables.length; i++) await tx.exec(triggerSql(plan, i))
  })
}

export async function uninstallPipeline(
  db: { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> },
  plan: Plan,
): Promise<string[]> {
  const removed: string[] = []
  await db.transaction(async (tx) => {
    for (const t of plan.target.tables) {
      const sql = targetSql(t)
      const exists = await tx.query(
        'SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2',
        [t.schema, t.table],
      )
      if (exists.rows.length === 0) continue
      await tx.exec(
        `DROP TRIGGER IF EXISTS runner_enqueue_embedding ON ${sql.table}; DROP TRIGGER IF EXISTS runner_dequeue_embedding ON ${sql.table};`,
      )
      removed.push(`triggers on ${sql.name}`)
    }
    await tx.exec(`DROP SCHEMA IF EXISTS ${quoteIdent(plan.target.runner_schema)} CASCADE`)
    removed.push(`schema ${plan.target.runner_schema} (queue, failed jobs, embedding metadata, trigger functions)`)
  })
  return removed
}
