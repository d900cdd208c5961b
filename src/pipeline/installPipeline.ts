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
import { DEFAULT_LOCK_POLICY, type LockPolicy, withLockTimeout } from '../db/withLockTimeout.ts'
import { TargetError } from '../errors.ts'

// The capture half of the auto-embedding pipeline, in the writer's own transaction: a BEFORE
// trigger on INSERT and on UPDATE OF the text columns sets the stale embedding to NULL, queues
// the row's key (one entry per row: a repeat change updates it) and NOTIFYs the workers.
// Unchanged text queues nothing; DELETE removes the queued entry and the metadata.
//
// A trigger runs with the rights of whoever fires it, and the application writes its tables as
// a role that has no rights in the runner's schema (nor should it). So the function is SECURITY
// DEFINER, owned by the runner's role, with its search_path fixed to pg_catalog, pg_temp and
// every other name qualified (the PostgreSQL manual's "Writing SECURITY DEFINER Functions
// Safely"), and nobody may call it but as a trigger (EXECUTE revoked from PUBLIC: a trigger's
// firing needs no EXECUTE right). Whoever may write the table may write through it; nobody gets
// anything else in the runner's schema.

/** A dollar-quote tag derived from the body itself, so no value inside the body can end it early. */
function dollarQuote(body: string): string {
  const tag = `$runner_${createHash('sha256').update(body).digest('hex').slice(0, 16)}$`
  if (body.includes(tag)) throw new Error('a trigger body contains its own quote tag') // needs a sha256 preimage
  return `${tag}${body}${tag}`
}

/** The capture function of one table; `vectorSchema` is the vector extension's schema (its <> operator is named there). */
export function captureFunctionSql(rs: RunnerSchema, t: Target, vectorSchema: string): string {
  const name = quoteLiteral(t.name)
  // The embedded text, compared whole: a change that leaves it the same needs no new embedding.
  const textChanged = `${t.text('NEW')} IS DISTINCT FROM ${t.text('OLD')}`
  // (lengths first: vectors of two lengths, in a column without dimensions, cannot be compared)
  const ext = quoteIdent(vectorSchema)
  const embeddingChanged = `(CASE WHEN TG_OP = 'INSERT' OR OLD.${t.embedding} IS NULL THEN true
    WHEN ${ext}.vector_dims(NEW.${t.embedding}) <> ${ext}.vector_dims(OLD.${t.embedding}) THEN true
    ELSE NEW.${t.embedding} OPERATOR(${ext}.<>) OLD.${t.embedding} END)`
  const body = `
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${rs.queue} WHERE table_name = ${name} AND row_key = ${t.keyText('OLD')};
    DELETE FROM ${rs.meta} WHERE table_name = ${name} AND row_key = ${t.keyText('OLD')};
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND NOT (${textChanged}) THEN
    RETURN NEW; -- the text did not change: the embedding is still right
  END IF;
  IF NEW.${t.embedding} IS NOT NULL AND ${embeddingChanged} THEN
    -- The writer brought its own embedding with the text: keep it. Its origin is the writer's,
    -- so no metadata of the runner's claims it, and nothing is left queued.
    DELETE FROM ${rs.queue} WHERE table_name = ${name} AND row_key = ${t.keyText('NEW')};
    DELETE FROM ${rs.meta} WHERE table_name = ${name} AND row_key = ${t.keyText('NEW')};
    RETURN NEW;
  END IF;
  NEW.${t.embedding} := NULL;
  INSERT INTO ${rs.queue} AS q (table_name, row_key) VALUES (${name}, ${t.keyText('NEW')})
  ON CONFLICT (table_name, row_key) DO UPDATE
    SET enqueued_at = now(), run_at = now(), attempts = 0, locked_by = NULL, locked_at = NULL, last_error = NULL;
  PERFORM pg_notify(${quoteLiteral(rs.channel)}, ${name});
  RETURN NEW;
END
`
  const fn = rs.captureFunction(t.plan)
  return `
CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS ${dollarQuote(body)};
REVOKE ALL ON FUNCTION ${fn}() FROM PUBLIC;`
}

/** The two capture triggers of one table, by name: what the catalog must hold. */
export function captureTriggerSql(rs: RunnerSchema, t: Target): Record<(typeof TRIGGER_NAMES)[number], string> {
  const fn = rs.captureFunction(t.plan)
  return {
    [CAPTURE_TRIGGER]: `CREATE TRIGGER ${quoteIdent(CAPTURE_TRIGGER)} BEFORE INSERT OR UPDATE OF ${t.textColumns} ON ${t.table} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
    [DEQUEUE_TRIGGER]: `CREATE TRIGGER ${quoteIdent(DEQUEUE_TRIGGER)} AFTER DELETE ON ${t.table} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
  }
}

/** The same definition, as pg_get_triggerdef prints it or as the runner wrote it: quotes and spacing aside. */
const sameDefinition = (a: string, b: string) => {
  const normalize = (sql: string) => sql.replace(/"/g, '').replace(/\s+/g, ' ').trim()
  return normalize(a) === normalize(b)
}

export interface InstallOptions {
  locks?: LockPolicy
  log?: (line: string) => void
  /** Called once a table's capture function is in place and before its triggers are created: a throw leaves the table untouched. */
  beforeTriggers?: (t: Target) => Promise<void>
}

/**
 * Idempotent: the schema migrated to this runner's version, each capture function replaced
 * (no table lock), and each table's triggers created only where the catalog does not already
 * hold them as they should be: one table per transaction, under lock_timeout. An installed
 * pipeline is left as it is, so a re-run takes no lock on the application's tables.
 */
export async function installPipeline(
  db: Pick<Database, 'transaction' | 'query' | 'exec'>,
  rs: RunnerSchema,
  targets: Target[],
  options: InstallOptions = {},
): Promise<{ from: number; to: number }> {
  const versions = await migrateRunnerSchema(db, rs)
  const vectorSchema = await readVectorSchema(db)
  for (const t of targets) {
    await db.transaction(async (tx) => {
      await tx.exec(captureFunctionSql(rs, t, vectorSchema))
      await recordCreated(tx, rs, { kind: 'function', schema_name: rs.name, name: captureFunctionName(t.plan) })
    })
    await options.beforeTriggers?.(t)
    const installed = await readCaptureTriggers(db, [t])
    const wanted = Object.entries(captureTriggerSql(rs, t)).filter(
      ([name, sql]) => !installed.some((i) => i.name === name && i.enabled === 'O' && sameDefinition(i.definition, sql)),
    )
    if (wanted.length === 0) continue
    await withLockTimeout(
      db,
      t.table,
      `installing the capture triggers on ${t.name}`,
      async (tx) => {
        // CREATE OR REPLACE TRIGGER takes SHARE ROW EXCLUSIVE, which the application's reads do
        // not wait for; DROP TRIGGER would take ACCESS EXCLUSIVE.
        for (const [name, sql] of wanted) {
          const present = installed.some((i) => i.name === name)
          await tx.exec(present ? sql.replace(/^CREATE TRIGGER /, 'CREATE OR REPLACE TRIGGER ') : sql)
          if (present && installed.find((i) => i.name === name)!.enabled !== 'O')
            await tx.exec(`ALTER TABLE ${t.table} ENABLE TRIGGER ${quoteIdent(name)}`)
          await recordCreated(tx, rs, { kind: 'trigger', schema_name: t.plan.schema, name, on_table: t.plan.table })
        }
      },
      options.locks ?? DEFAULT_LOCK_POLICY,
      options.log ?? (() => {}),
    )
  }
  return versions
}

/** The schema the vector extension lives in. */
export async function readVectorSchema(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ schema: string }>(
    `SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`,
  )
  if (!rows[0]) throw new TargetError('the vector extension is not installed in this database: CREATE EXTENSION vector')
  return rows[0].schema
}

/** The capture triggers installed on these tables, as the catalog has them. */
export async function readCaptureTriggers(
  db: Queryable,
  targets: Target[],
): Promise<{ table: string; name: string; definition: string; enabled: string }[]> {
  const { rows } = await db.query<{ table: string; name: string; definition: string; enabled: string }>(
    `SELECT n.nspname || '.' || c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled
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
export async function uninstallPipeline(
  db: Pick<Database, 'transaction' | 'query' | 'exec'>,
  rs: RunnerSchema,
  targets: Target[],
  options: InstallOptions = {},
): Promise<string[]> {
  const removed: string[] = []
  // One transaction, so an uninstall is whole or not at all; under lock_timeout, since DROP TRIGGER locks each table.
  const tables = targets.map((t) => t.table)
  await withLockTimeout(
    db,
    tables,
    'uninstalling the pipeline',
    async (tx) => {
      const { version } = await readSchemaVersion(tx, rs)
      // A runner before the record (schema version 1) created the same two triggers and one function per target.
      const created: CreatedObject[] =
        version >= 2
          ? await readCreated(tx, rs)
          : targets.flatMap((t) => [
              ...TRIGGER_NAMES.map(
                (name): CreatedObject => ({ kind: 'trigger', schema_name: t.plan.schema, name, on_table: t.plan.table }),
              ),
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
    },
    options.locks ?? DEFAULT_LOCK_POLICY,
    options.log ?? (() => {}),
  )
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
