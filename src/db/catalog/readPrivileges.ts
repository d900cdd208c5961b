import type { Queryable } from '../database.ts'
import type { Privileges } from './vocabulary.ts'

/**
 * The rights later batches need: CREATE INDEX and CREATE TRIGGER need the table's owner (or a
 * member of its role), the backfill needs UPDATE, and the runner's schema needs CREATE on the
 * database unless it exists already and is usable.
 */
export async function readPrivileges(
  db: Queryable,
  runnerSchema: string,
  tables: { schema: string; table: string }[],
): Promise<Privileges> {
  const { rows: who } = await db.query<{ role: string; can_create: boolean }>(
    `SELECT current_user AS role,
            has_database_privilege(current_database(), 'CREATE')
            OR coalesce((SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), false) AS can_create`,
    [runnerSchema],
  )
  const { rows } = await db.query<Privileges['tables'][number]>(
    `SELECT n.nspname || '.' || c.relname AS table, pg_has_role(c.relowner, 'MEMBER') AS owner,
            has_table_privilege(c.oid, 'SELECT') AS select, has_table_privilege(c.oid, 'UPDATE') AS update,
            has_table_privilege(c.oid, 'TRIGGER') AS trigger
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS wanted(schema, table_name, position)
       ON wanted.schema = n.nspname AND wanted.table_name = c.relname
     ORDER BY wanted.position`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  )
  return { role: who[0]!.role, can_create_runner_schema: who[0]!.can_create, tables: rows }
}
