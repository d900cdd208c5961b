import type { Queryable } from '../database.ts'

// Whether the runner's role sees every row of a table: a count, a backfill or a validation
// made through row-level security that hides rows would claim what it could not see. The role
// sees every row when the table (and each partition a partitioned table's rows are read
// through) has no row-level security, or the role is a superuser, has BYPASSRLS, or has the
// owner's privileges on a table whose row-level security is not forced.

export interface RowVisibility {
  /** The relation (the table or one of its partitions) whose policies hide rows. */
  relation: string
  forced: boolean
  policies: string[]
}

/** The relations of this table whose row-level security filters what the current role reads; empty when it sees every row. */
export async function readHiddenRows(db: Queryable, table: string): Promise<RowVisibility[]> {
  const { rows } = await db.query<RowVisibility>(
    `SELECT n.nspname || '.' || c.relname AS relation, c.relforcerowsecurity AS forced,
            ARRAY(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies
     FROM (SELECT $1::regclass AS relid, 0 AS level UNION SELECT relid, level FROM pg_partition_tree($1::regclass)) tree
     JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_roles r ON r.rolname = current_user
     WHERE c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
       AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
     ORDER BY tree.level, 1`,
    [table],
  )
  return rows
}

export function describeHiddenRows(role: string, hidden: RowVisibility[]): string {
  const where = hidden
    .map((h) => `${h.relation} (${h.forced ? 'forced' : 'enabled'}; policies: ${h.policies.join(', ') || 'none, so no row is visible'})`)
    .join(', ')
  return `has row-level security that hides rows from role ${role}: ${where}. Every count, the backfill and the validation would see only the rows the policies show it. Run as a role with BYPASSRLS (ALTER ROLE ${role} BYPASSRLS) or, where it is not forced, as the table's owner`
}
