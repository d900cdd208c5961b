import type { Queryable } from '../database.ts'
import type { Trigger } from './vocabulary.ts'

/** The user-defined triggers on these tables ("schema.table"), with their definitions. */
export async function readTriggers(db: Queryable, tables: { schema: string; table: string }[]): Promise<Trigger[]> {
  const { rows } = await db.query<Trigger>(
    `SELECT n.nspname || '.' || c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN unnest($1::text[], $2::text[]) AS wanted(schema, table_name) ON wanted.schema = n.nspname AND wanted.table_name = c.relname
     WHERE NOT t.tgisinternal
     ORDER BY 1, 2`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  )
  return rows
}
