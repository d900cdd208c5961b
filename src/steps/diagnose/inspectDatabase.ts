import type { Queryable } from '../../db/database.ts'
import { quoteIdent, quoteQualified } from '../../db/quote.ts'
import { FAILED_TABLE, QUEUE_TABLE, WORKER_APPLICATION_NAME } from '../../db/runnerObjects.ts'
import type { Plan } from '../../plan/schema.ts'
import type { DiagnoseOutput, VectorColumn, VectorIndex } from './output.ts'

// Read-only catalog inspection: what pgvector sees in the target database.

export async function inspectExtension(db: Queryable): Promise<DiagnoseOutput['extension']> {
  const { rows } = await db.query<{ installed_version: string | null; default_version: string }>(
    `SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'vector'`,
  )
  return { installed_version: rows[0]?.installed_version ?? null, available_version: rows[0]?.default_version ?? null }
}

export async function serverVersion(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)
  return rows[0]!.v
}

/** Every vector or halfvec column in user schemas, with its row and NULL counts. */
export async function inspectVectorColumns(db: Queryable, plan: Plan): Promise<VectorColumn[]> {
  const { rows } = await db.query<{ schema: string; table: string; column: string; type: 'vector' | 'halfvec'; typmod: number }>(`
    SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, t.typname AS type, a.atttypmod AS typmod
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_type t ON t.oid = a.atttypid
    WHERE t.typname IN ('vector', 'halfvec') AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY 1, 2, 3`)
  const columns: VectorColumn[] = []
  for (const r of rows) {
    const counts = await db.query<{ rows: number; filled: number }>(
      `SELECT count(*) AS rows, count(${quoteIdent(r.column)}) AS filled FROM ${quoteQualified(r.schema, r.table)}`,
    )
    const { rows: total, filled } = counts.rows[0]!
    columns.push({
      schema: r.schema,
      table: r.table,
      column: r.column,
      type: r.type,
      dimensions: r.typmod > 0 ? r.typmod : null,
      rows: total,
      nulls: total - filled,
      targeted: plan.target.tables.some((t) => t.schema === r.schema && t.table === r.table && t.embedding_column === r.column),
    })
  }
  return columns
}

/** HNSW and IVFFlat indexes, with the column they serve (also through an expression such as a halfvec cast). */
export async function inspectVectorIndexes(
  db: Queryable,
  columns: Pick<VectorColumn, 'schema' | 'table' | 'column'>[],
): Promise<VectorIndex[]> {
  const { rows } = await db.query<{
    schema: string
    table: string
    name: string
    method: string
    opclass: string
    size_bytes: number
    valid: boolean
    definition: string
    reloptions: string[] | null
    column: string | null
    expression: string | null
  }>(`
    SELECT n.nspname AS schema, t.relname AS table, i.relname AS name, am.amname AS method, opc.opcname AS opclass,
           pg_relation_size(i.oid) AS size_bytes, ix.indisvalid AS valid, pg_get_indexdef(i.oid) AS definition,
           i.reloptions, a.attname AS column, pg_get_expr(ix.indexprs, ix.indrelid) AS expression
    FROM pg_index ix
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_class t ON t.oid = ix.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = i.relam
    JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
    LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ix.indkey[0] AND ix.indkey[0] <> 0
    WHERE am.amname IN ('hnsw', 'ivfflat')
    ORDER BY 1, 2, 3`)
  return rows.map((r) => {
    let column = r.column
    if (!column && r.expression) {
      // An expression index, e.g. ((embedding)::halfvec(1536)): find the vector column it reads.
      const candidates = columns.filter((c) => c.schema === r.schema && c.table === r.table)
      column =
        candidates.find((c) => new RegExp(`(^|[^\\w"])("?)${c.column.replace(/\W/g, '\\$&')}\\2([^\\w"]|$)`).test(r.expression!))?.column ??
        null
    }
    const options = Object.fromEntries((r.reloptions ?? []).map((o) => o.split('=') as [string, string]))
    return {
      schema: r.schema,
      table: r.table,
      column,
      name: r.name,
      method: r.method,
      opclass: r.opclass,
      options,
      size_bytes: Number(r.size_bytes),
      valid: r.valid,
      definition: r.definition,
    }
  })
}

/** The vector indexes on one column, and only those (a neighbouring column's index never counts). */
export async function vectorIndexesOn(db: Queryable, column: Pick<VectorColumn, 'schema' | 'table' | 'column'>): Promise<VectorIndex[]> {
  return (await inspectVectorIndexes(db, [column])).filter(
    (i) => i.schema === column.schema && i.table === column.table && i.column === column.column,
  )
}

export async function inspectWriters(db: Queryable, plan: Plan): Promise<DiagnoseOutput['writers']> {
  const { rows: triggers } = await db.query<{ schema: string; table: string; name: string; definition: string }>(
    `SELECT n.nspname AS schema, c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT t.tgisinternal AND c.relname = ANY($1::text[]) ORDER BY 2, 3`,
    [plan.target.tables.map((t) => t.table)],
  )
  const targeted = triggers.filter((t) => plan.target.tables.some((p) => p.schema === t.schema && p.table === t.table))

  const schema = plan.target.runner_schema
  const exists = await db.query<{ queue: string | null; failed: string | null }>(
    `SELECT to_regclass($1)::text AS queue, to_regclass($2)::text AS failed`,
    [quoteQualified(schema, QUEUE_TABLE), quoteQualified(schema, FAILED_TABLE)],
  )
  let queue: DiagnoseOutput['writers']['queue'] = null
  if (exists.rows[0]!.queue) {
    const pending = await db.query<{ pending: number; oldest: number | null }>(
      `SELECT count(*) AS pending, extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest FROM ${quoteQualified(schema, QUEUE_TABLE)}`,
    )
    const failed = exists.rows[0]!.failed
      ? (await db.query<{ n: number }>(`SELECT count(*) AS n FROM ${quoteQualified(schema, FAILED_TABLE)}`)).rows[0]!.n
      : 0
    queue = { pending: pending.rows[0]!.pending, oldest_pending_seconds: pending.rows[0]!.oldest, failed }
  }
  const workers = await db.query<{ n: number }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1`, [
    WORKER_APPLICATION_NAME,
  ])
  return {
    triggers: targeted.map((t) => ({ table: `${t.schema}.${t.table}`, name: t.name, definition: t.definition })),
    queue,
    workers_connected: workers.rows[0]!.n,
  }
}

/**
 * The rights later batches need: CREATE INDEX and CREATE TRIGGER need the table's owner (or a
 * member of its role), the backfill needs UPDATE, and the runner's schema needs CREATE on the
 * database unless it exists already and is usable.
 */
export async function inspectPrivileges(db: Queryable, plan: Plan): Promise<DiagnoseOutput['privileges']> {
  const { rows: who } = await db.query<{ role: string; can_create: boolean }>(
    `SELECT current_user AS role,
            has_database_privilege(current_database(), 'CREATE')
            OR coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), false) AS can_create`,
    [plan.target.runner_schema],
  )
  const tables: DiagnoseOutput['privileges']['tables'] = []
  for (const t of plan.target.tables) {
    const { rows } = await db.query<{ owner: boolean; select: boolean; update: boolean; trigger: boolean }>(
      `SELECT pg_has_role(c.relowner, 'MEMBER') AS owner,
              has_table_privilege(c.oid, 'SELECT') AS select, has_table_privilege(c.oid, 'UPDATE') AS update, has_table_privilege(c.oid, 'TRIGGER') AS trigger
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
      [t.schema, t.table],
    )
    if (rows[0]) tables.push({ table: `${t.schema}.${t.table}`, ...rows[0] })
  }
  return { role: who[0]!.role, can_create_runner_schema: who[0]!.can_create, tables }
}
