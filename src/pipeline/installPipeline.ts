import { createHash } from 'node:crypto'
import type { Database, Queryable } from '../db/database.ts'
import { quoteIdent, quoteLiteral, quoteQualified } from '../db/quote.ts'
import {
  type CreatedObject,
  migrateRunnerSchema,
  readCreated,
  readSchemaVersion,
  recordCreated,
} from '../db/runnerSchema/migrateRunnerSchema.ts'
import {
  CAPTURE_TRIGGER,
  captureFunctionName,
  DEQUEUE_TRIGGER,
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
  IF NEW.${t.embedding} IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.${t.embedding} IS DISTINCT FROM OLD.${t.embedding}) THEN
    -- The writer brought its own embedding with the text: keep it. Its origin is the writer's,
    -- so no metadata of the runner's claims it, and nothing is left queued.
    DELETE FROM ${rs.queue} WHERE table_name = ${name} AND row_key = NEW.${t.key}::text;
    DELETE FROM ${rs.meta} WHERE table_name = ${name} AND row_key = NEW.${t.key}::text;
    RETURN NEW;
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
    for (const t of targets) {
      await tx.exec(captureTriggerSql(rs, t))
      await recordCreated(tx, rs, { kind: 'function', schema_name: rs.name, name: captureFunctionName(t.plan) })
      for (const trigger of TRIGGER_NAMES)
        await recordCreated(tx, rs, { kind: 'trigger', schema_name: t.plan.schema, name: trigger, on_table: t.plan.table })
    }
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
 * Removes what the runner created and nothing else, as its own record lists it: the capture
 * triggers, the capture functions, the runner's tables, and the schema only when the runner
 * created it and nothing else is left in it. Never a CASCADE. Embeddings and indexes stay.
 */
export async function uninstallPipeline(db: Pick<Database, 'transaction'>, rs: RunnerSchema, targets: Target[]): Promise<string[]> {
  const removed: string[] = []
  await db.transaction(async (tx) => {
    const { version } = await readSchemaVersion(tx, rs)
    // A runner before the record (schema version 1) created the same two triggers and one function per target.
    const created: CreatedObject[] =
      version >= 2
        ? await readCreated(tx, rs)
        : targets.flatMap((t) => [
            ...TRIGGER_NAMES.map((name): CreatedObject => ({ kind: 'trigger', schema_name: t.plan.schema, name, on_table: t.plan.table })),
            ...(version >= 1 ? [{ kind: 'function' as const, schema_name: rs.name, name: captureFunctionName(t.plan) }] : []),
          ])
    for (const o of created.filter((o) => o.kind === 'trigger')) {
      await tx.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(o.name)} ON ${quoteQualified(o.schema_name, o.on_table!)}`)
      removed.push(`trigger ${o.name} on ${o.schema_name}.${o.on_table}`)
    }
    for (const o of created.filter((o) => o.kind === 'function')) {
      await tx.exec(`DROP FUNCTION IF EXISTS ${quoteQualified(o.schema_name, o.name)}()`)
      removed.push(`function ${o.schema_name}.${o.name}()`)
    }
    if (version === 0) return // nothing of the runner's tables here: the schema is not the runner's
    for (const table of RUNNER_TABLES) await tx.exec(`DROP TABLE IF EXISTS ${rs.ident}.${quoteIdent(table)}`)
    removed.push(`the runner's tables in ${rs.name} (${RUNNER_TABLES.join(', ')})`)
    const schema = created.find((o) => o.kind === 'schema' && o.name === rs.name)
    const left = await countObjectsIn(tx, rs.name)
    if (schema && left === 0) {
      await tx.exec(`DROP SCHEMA ${rs.ident} RESTRICT`)
      removed.push(`schema ${rs.name}`)
    } else {
      removed.push(
        `(schema ${rs.name} kept: ${schema ? `it holds ${left} object(s) the runner did not create` : 'the runner did not create it'})`,
      )
    }
  })
  return removed
}

/** Relations, functions, types and extensions in a schema. */
export async function countObjectsIn(db: Queryable, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT ((SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)
           + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)
           + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typrelid = 0 AND t.typelem = 0)
           + (SELECT count(*) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = $1))::int AS n`,
    [schema],
  )
  return rows[0]!.n
}
