import type { Queryable } from '../db/database.ts'
import { UsageError } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'

/**
 * Before any batch runs: every table and column the plan names exists in the target. A typo
 * in the plan stops here with the plan path and the database's own names, having changed nothing.
 */
export async function checkTargets(db: Queryable, plan: Plan, planPath: string): Promise<void> {
  const problems: string[] = []
  for (const [i, t] of plan.target.tables.entries()) {
    const { rows } = await db.query<{ column: string }>(
      `SELECT a.attname AS column FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [t.schema, t.table],
    )
    if (rows.length === 0) {
      problems.push(`target.tables[${i}].table: table ${t.schema}.${t.table} does not exist in the target database`)
      continue
    }
    const columns = rows.map((r) => r.column)
    const named: [string, string][] = [
      ['key', t.key],
      ['embedding_column', t.embedding_column],
      ...t.text_columns.map((c, j): [string, string] => [`text_columns[${j}]`, c]),
    ]
    for (const [field, column] of named) {
      if (!columns.includes(column))
        problems.push(`target.tables[${i}].${field}: ${t.schema}.${t.table} has no column "${column}" (it has: ${columns.join(', ')})`)
    }
  }
  if (problems.length)
    throw new UsageError(`${planPath}: the plan does not match the target database; nothing was changed:\n  ${problems.join('\n  ')}`)
}
