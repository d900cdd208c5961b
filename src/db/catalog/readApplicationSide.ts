import type { Queryable } from '../database.ts'

// What the application does with a target table that the runner must answer for: the roles it
// writes as (a capture trigger fires as them), the row-level security on it, and the
// materialized views that copy its embedding column (they keep old vectors until refreshed).

/** Roles other than the owner (and its members) with INSERT, UPDATE or DELETE on the table: the application's writers. */
export async function readWriterRoles(db: Queryable, table: string): Promise<string[]> {
  const { rows } = await db.query<{ role: string }>(
    `SELECT r.rolname::text AS role FROM pg_roles r, pg_class c
     WHERE c.oid = $1::regclass AND r.rolname NOT LIKE 'pg\\_%' AND NOT r.rolsuper
       AND NOT pg_has_role(r.oid, c.relowner, 'USAGE')
       AND (has_table_privilege(r.oid, c.oid, 'INSERT') OR has_table_privilege(r.oid, c.oid, 'UPDATE') OR has_table_privilege(r.oid, c.oid, 'DELETE'))
     ORDER BY 1`,
    [table],
  )
  return rows.map((r) => r.role)
}

export interface RowSecurity {
  enabled: boolean
  forced: boolean
  policies: string[]
}

export async function readRowSecurity(db: Queryable, table: string): Promise<RowSecurity> {
  const { rows } = await db.query<RowSecurity>(
    `SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
            ARRAY(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies
     FROM pg_class c WHERE c.oid = $1::regclass`,
    [table],
  )
  return rows[0]!
}

export interface MaterializedView {
  view: string
  refresh: string
}

/** Materialized views that read the column: they hold the vectors as of their last refresh. */
export async function readMaterializedViews(db: Queryable, table: string, column: string): Promise<MaterializedView[]> {
  const { rows } = await db.query<MaterializedView>(
    `SELECT DISTINCT n.nspname || '.' || v.relname AS view, format('REFRESH MATERIALIZED VIEW %I.%I', n.nspname, v.relname) AS refresh
     FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace
     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = $1::regclass AND a.attname = $2 AND v.relkind = 'm'
     ORDER BY 1`,
    [table, column],
  )
  return rows
}

/** Whether the current role may SET ROLE to this one (a superuser, or a member of it). */
export async function maySetRole(db: Queryable, role: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, $1, 'MEMBER') AS ok`,
    [role],
  )
  return rows[0]!.ok
}
