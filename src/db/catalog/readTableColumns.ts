import type { Queryable } from '../database.ts'
import type { TableColumn } from './vocabulary.ts'

/** The columns of one table (or partitioned table, view...), in order; undefined when no such relation exists. */
export async function readTableColumns(db: Queryable, schema: string, table: string): Promise<TableColumn[] | undefined> {
  const { rows: relation } = await db.query<{ oid: number }>(
    `SELECT c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, table],
  )
  if (!relation[0]) return undefined
  const { rows } = await db.query<TableColumn>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            coalesce(base.typname, t.typname) AS base_type, a.atttypmod AS typmod,
            a.attnotnull AS not_null, (a.atthasdef OR a.attidentity <> '') AS has_default, a.attgenerated <> '' AS generated
     FROM pg_attribute a
     JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_type base ON t.typtype = 'd' AND base.oid = t.typbasetype
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum`,
    [relation[0].oid],
  )
  return rows
}
