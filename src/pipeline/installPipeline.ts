import { createHash } from 'node:crypto'
import type { Database, Queryable } from '../db/database.ts'
import { quoteIdent, quoteLiteral } from '../db/quote.ts'
import { migrateRunnerSchema } from '../db/runnerSchema/migrateRunnerSchema.ts'
import {
  CAPTURE_TRIGGER,
  DEQUEUE_TRIGGER,
  MIGRATIONS_TABLE,
  RUNNER_TABLES,
  type RunnerSchema,
  TRIGGER_NAMES,
} from '../db/runnerSchema/objects.ts'
import type { Target } from '../db/target.ts'

// The capture half of the auto-embedding pipeline, in the writer's own transaction: a BEFORE
// trigger on INSERT and on UPDATE OF the text columns sets the stale embedding to NULL, queues
// the row's key (one entry per row: a repeat change updates it) and NOTIFYs the workers.
// Unchanged text queues nothing; DELETE removes the queued entry and the metadata.

/** A dollar-quote tag derived from the body itself, so no value inside the body can end it early. */
function dollarQuote(body: string): string {
  const tag = `$runner_${createHash('sha256').update(body).digest('hex').slice(0, 16)}$`
  if (body.includes(tag)) throw new Error('a trigger body contains its own quote tag') // needs a sha256 preimage
  return `${tag}${body}${tag}`
}

export function captureTriggerSql(rs: RunnerSchema, t: Target): string {
  const name = quoteLiteral(t.name)
  const changed = t.plan.text_columns.map((c) => `NEW.${quoteIdent(c)} IS DISTINCT FROM OLD.${quoteIdent(c)}`).join(' OR ')
  const body = `
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${rs.queue} WHERE table_name = ${name} AND row_key = OLD.${t.key}::text;
    DELETE FROM ${rs.meta} WHERE table_name = ${name} AND row_key = OLD.${t.key}::text;
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND NOT (${changed}) THEN
    RETURN NEW; -- the text did not change: the embedding is still right
  END IF;
  IF TG_OP = 'INSERT' AND NEW.${t.embedding} IS NOT NULL THEN
    RETURN NEW; -- the writer brought its own embedding
  END IF;
  NEW.${t.embedding} := NULL;
  INSERT INTO ${rs.queue} AS q (table_name, row_key) VALUES (${name}, NEW.${t.key}::text)
  ON CONFLICT (table_name, row_key) DO UPDATE
    SET enqueued_at = now(), run_at = now(), attempts = 0, locked_by = NULL, locked_at = NULL, last_error = NULL;
  PERFORM pg_notify(${quoteLiteral(rs.channel)}, ${name});
  RETURN NEW;
END
`
  const fn = rs.captureFunction(t.plan)
  return `
CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body)};
DROP TRIGGER IF EXISTS ${quoteIdent(CAPTURE_TRIGGER)} ON ${t.table};
CREATE TRIGGER ${quoteIdent(CAPTURE_TRIGGER)} BEFORE INSERT OR UPDATE OF ${t.textColumns} ON ${t.table}
  FOR EACH ROW EXECUTE FUNCTION ${fn}();
DROP TRIGGER IF EXISTS ${quoteIdent(DEQUEUE_TRIGGER)} ON ${t.table};
CREATE TRIGGER ${quoteIdent(DEQUEUE_TRIGGER)} AFTER DELETE ON ${t.table}
  FOR EACH ROW EXECUTE FUNCTION ${fn}();`
}

/** Idempotent: the schema migrated to this runner's version, then every capture trigger replaced in one transaction. */
export async function installPipeline(
  db: Pick<Database, 'transaction'>,
  rs: RunnerSchema,
  targets: Target[],
): Promise<{ from: number; to: number }> {
  const versions = await migrateRunnerSchema(db, rs)
  await db.transaction(async (tx) => {
    for (const t of targets) await tx.exec(captureTriggerSql(rs, t))
  })
  return versions
}

/** The capture triggers installed on these tables, as the catalog has them. */
export async function readCaptureTriggers(
  db: Queryable,
  targets: Target[],
): Promise<{ table: string; name: string; definition: string }[]> {
  const { rows } = await db.query<{ table: string; name: string; definition: string }>(
    `SELECT n.nspname || '.' || c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.tgname = ANY($1::text[]) AND n.nspname || '.' || c.relname = ANY($2::text[]) ORDER BY 1, 2`,
    [[...TRIGGER_NAMES], targets.map((t) => t.name)],
  )
  return rows
}

/**
 * Removes what the runner created and nothing else: the two capture triggers on each target
 * table, the capture functions and the runner's tables, each by name. The schema itself goes
 * only when it is the runner's (it holds the migrations record) and nothing else is left in
 * it: never a blind CASCADE. Embeddings and indexes stay.
 */
export async function uninstallPipeline(db: Pick<Database, 'transaction'>, rs: RunnerSchema, targets: Target[]): Promise<string[]> {
  const removed: string[] = []
  await db.transaction(async (tx) => {
    for (const t of targets) {
      for (const trigger of TRIGGER_NAMES) await tx.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(trigger)} ON ${t.table}`)
      removed.push(`capture triggers on ${t.name}`)
    }
    const { rows } = await tx.query<{ ours: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ours', [
      `${rs.ident}.${quoteIdent(MIGRATIONS_TABLE)}`,
    ])
    if (!rows[0]!.ours) return
    for (const t of targets) await tx.exec(`DROP FUNCTION IF EXISTS ${rs.captureFunction(t.plan)}()`)
    for (const table of RUNNER_TABLES) await tx.exec(`DROP TABLE IF EXISTS ${rs.ident}.${quoteIdent(table)}`)
    removed.push(`${RUNNER_TABLES.join(', ')} and the capture functions in schema ${rs.name}`)
    const { rows: left } = await tx.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)
            + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)
            + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typrelid = 0 AND t.typelem = 0)
            + (SELECT count(*) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = $1) AS n`,
      [rs.name],
    )
    if (Number(left[0]!.n) === 0) {
      await tx.exec(`DROP SCHEMA ${rs.ident} RESTRICT`)
      removed.push(`schema ${rs.name}`)
    } else removed.push(`(schema ${rs.name} kept: it holds ${left[0]!.n} object(s) the runner did not list)`)
  })
  return removed
}
