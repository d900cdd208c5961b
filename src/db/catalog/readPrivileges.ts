import type { Queryable } from '../database.ts'
import type { Privileges } from './vocabulary.ts'

/** What a role that is not the owner lacks, said the same way by the diagnosis and the preflight. */
export const OWNERSHIP_NEEDED =
  'ownership (CREATE INDEX and CREATE TRIGGER need the table owner; on a partitioned table, of every partition)'

/**
 * The rights later batches need: CREATE INDEX and CREATE TRIGGER need the table's owner (or a
 * member of its role), of each partition too for a partitioned table, the backfill needs UPDATE, and the runner's schema needs CREATE on the
 * database unless it exists already and is usable.
 */
export async function readPrivileges(
  db: Queryable,
  runnerSchema: string,
  tables: { schema: string; table: string }[],
): Promise<Privileges> {
  const { rows: who } = await db.query<{ role: string; can_create: boolean }>(
    // An existing schema must be usable and creatable in (CREATE on the database does not help there).
    `SELECT current_user AS role,
            coalesce((SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1),
                     has_database_privilege(current_database(), 'CREATE')) AS can_create`,
    [runnerSchema],
  )
  const { rows } = await db.query<Privileges['tables'][number]>(
    `SELECT n.nspname || '.' || c.relname AS table,
            -- a partitioned table's indexes are built on each partition: each must be the role's too
            pg_has_role(c.relowner, 'MEMBER') AND NOT EXISTS (
              SELECT 1 FROM pg_partition_tree(c.oid) p JOIN pg_class pc ON pc.oid = p.relid WHERE NOT pg_has_role(pc.relowner, 'MEMBER')
            ) AS owner,
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

/**
 * Whether this role may SET session_replication_role, which keeps the application's
 * triggers from firing on the runner's writes: a superuser may, and on PostgreSQL 15+ a role
 * granted SET ON PARAMETER session_replication_role.
 */
export async function canSuppressTriggers(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ superuser: boolean; version: number }>(
    `SELECT rolsuper AS superuser, current_setting('server_version_num')::int AS version FROM pg_roles WHERE rolname = current_user`,
  )
  if (rows[0]?.superuser) return true
  if ((rows[0]?.version ?? 0) < 150000) return false
  const { rows: granted } = await db.query<{ ok: boolean }>(`SELECT has_parameter_privilege('session_replication_role', 'SET') AS ok`)
  return granted[0]!.ok
}

/** Whether the key column alone is unique through a valid, non-partial unique index (a primary key included). */
/** The kind of relation: r table, p partitioned table, v view, m materialized view, f foreign table. */
export async function readRelationKind(db: Queryable, schema: string, table: string): Promise<string | undefined> {
  const { rows } = await db.query<{ kind: string }>(
    `SELECT c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, table],
  )
  return rows[0]?.kind
}

export async function hasDatabasePrivilege(db: Queryable, privilege: 'CREATE' | 'TEMP'): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT has_database_privilege(current_database(), $1) AS ok', [privilege])
  return rows[0]!.ok
}
