import type { Queryable } from '../database.ts'
import type { VectorType } from './vocabulary.ts'

export interface VectorColumnRef {
  schema: string
  table: string
  column: string
  type: VectorType
  dimensions: number | null
}

/**
 * Every vector or halfvec column of a table or partitioned table in the user's schemas. Not
 * temporary tables: another session's cannot even be counted ("cannot access temporary tables
 * of other sessions"), and an application's scratch table is not its data.
 */
export async function readVectorColumns(db: Queryable): Promise<VectorColumnRef[]> {
  const { rows } = await db.query<{ schema: string; table: string; column: string; type: VectorType; typmod: number }>(`
    SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, t.typname AS type, a.atttypmod AS typmod
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_type t ON t.oid = a.atttypid
    WHERE t.typname IN ('vector', 'halfvec') AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
      AND a.attnum > 0 AND NOT a.attisdropped
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    ORDER BY 1, 2, 3`)
  return rows.map((r) => ({ schema: r.schema, table: r.table, column: r.column, type: r.type, dimensions: r.typmod > 0 ? r.typmod : null }))
}
