import type { Queryable } from '../database.ts'
import type { VectorIndex } from './vocabulary.ts'

interface ColumnRef {
  schema: string
  table: string
  column: string
}

/**
 * HNSW and IVFFlat indexes, with the column each serves (also through an expression such as
 * a halfvec cast). With `on`, only the indexes of that one column: a neighbouring column's
 * index never counts.
 */
export async function readVectorIndexes(db: Queryable, columns: ColumnRef[] = [], on?: ColumnRef): Promise<VectorIndex[]> {
  const known = on ? [on, ...columns] : columns
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
  }>(
    `SELECT n.nspname AS schema, t.relname AS table, i.relname AS name, am.amname AS method, opc.opcname AS opclass,
            -- A partitioned index has no storage of its own: its size is its partitions' indexes.
            coalesce((SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(i.oid)), pg_relation_size(i.oid)) AS size_bytes, ix.indisvalid AS valid, pg_get_indexdef(i.oid) AS definition,
            i.reloptions, a.attname AS column, pg_get_expr(ix.indexprs, ix.indrelid) AS expression
     FROM pg_index ix
     JOIN pg_class i ON i.oid = ix.indexrelid
     JOIN pg_class t ON t.oid = ix.indrelid
     JOIN pg_namespace n ON n.oid = t.relnamespace
     JOIN pg_am am ON am.oid = i.relam
     JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
     LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ix.indkey[0] AND ix.indkey[0] <> 0
     WHERE am.amname IN ('hnsw', 'ivfflat') AND ($1::text IS NULL OR (n.nspname = $1 AND t.relname = $2))
     ORDER BY 1, 2, 3`,
    [on?.schema ?? null, on?.table ?? null],
  )
  const indexes = rows.map((r): VectorIndex => {
    let column = r.column
    if (!column && r.expression) {
      // An expression index, e.g. ((embedding)::halfvec(1536)): find the vector column it reads.
      const candidates = known.filter((c) => c.schema === r.schema && c.table === r.table)
      column =
        candidates.find((c) => new RegExp(`(^|[^\\w"])("?)${c.column.replace(/\W/g, '\\$&')}\\2([^\\w"]|$)`).test(r.expression!))?.column ??
        null
    }
    return {
      schema: r.schema,
      table: r.table,
      column,
      name: r.name,
      method: r.method,
      opclass: r.opclass,
      options: Object.fromEntries((r.reloptions ?? []).map((o) => o.split('=') as [string, string])),
      size_bytes: Number(r.size_bytes),
      valid: r.valid,
      definition: r.definition,
    }
  })
  return on ? indexes.filter((i) => i.column === on.column) : indexes
}

/** The index as pg_indexes lists it: what a DBA checks first. */
export async function isListedInPgIndexes(db: Queryable, schema: string, name: string): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = $1 AND indexname = $2', [
    schema,
    name,
  ])
  return rows[0]!.n === 1
}

/** Scans of an index since the statistics were reset, its partitions' indexes included: 0 says the application never used it. */
export async function readIndexScans(db: Queryable, schema: string, name: string): Promise<number> {
  const { rows } = await db.query<{ scans: number }>(
    `WITH i AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)
     SELECT coalesce(sum(s.idx_scan), 0)::float8 AS scans FROM pg_stat_all_indexes s, i
     WHERE s.indexrelid = i.oid OR s.indexrelid IN (SELECT relid FROM pg_partition_tree(i.oid))`,
    [schema, name],
  )
  return rows[0]?.scans ?? 0
}
