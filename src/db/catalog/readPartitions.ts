import type { Queryable } from '../database.ts'
import { quoteQualified } from '../quote.ts'

export interface Partition {
  schema: string
  table: string
  /** "schema"."table", quoted. */
  relation: string
  /** The partitioned table it is a partition of, quoted. */
  parent: string
  /** A leaf holds rows; a partition that is itself partitioned holds none. */
  leaf: boolean
  /** 1 for a partition of the target, 2 for a partition of one of those, and so on. */
  level: number
}

/**
 * Whether a table is partitioned, and its partitions at every level (not the table itself),
 * shallowest first. A plain table has none.
 */
export async function readPartitions(db: Queryable, relation: string): Promise<{ partitioned: boolean; partitions: Partition[] }> {
  const { rows: kind } = await db.query<{ relkind: string }>('SELECT relkind::text AS relkind FROM pg_class WHERE oid = $1::regclass', [
    relation,
  ])
  if (kind[0]?.relkind !== 'p') return { partitioned: false, partitions: [] }
  const { rows } = await db.query<{
    schema: string
    table: string
    parent_schema: string
    parent_table: string
    leaf: boolean
    level: number
  }>(
    `SELECT n.nspname AS schema, c.relname AS table, pn.nspname AS parent_schema, p.relname AS parent_table, t.isleaf AS leaf, t.level
     FROM pg_partition_tree($1::regclass) t
     JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_class p ON p.oid = t.parentrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE t.level > 0 ORDER BY t.level, n.nspname, c.relname`,
    [relation],
  )
  return {
    partitioned: true,
    partitions: rows.map((r) => ({
      schema: r.schema,
      table: r.table,
      relation: quoteQualified(r.schema, r.table),
      parent: quoteQualified(r.parent_schema, r.parent_table),
      leaf: r.leaf,
      level: r.level,
    })),
  }
}
