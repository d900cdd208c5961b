import type { Queryable } from '../../db/database.ts'
import { quoteIdent, quoteQualified } from '../../db/quote.ts'
import { OPERATORS } from '../../db/vectorOps.ts'
import type { QueryPlan, TargetColumn } from './output.ts'

// The query the application runs to search (nearest 10 by the plan's distance), explained
// with ANALYZE: it shows whether PostgreSQL scans every row, and how long that takes.

/** A fixed pseudo-random unit vector: a realistic query vector when no row has an embedding yet. */
export function syntheticQueryVector(dimensions: number, seed = 7): number[] {
  let state = seed
  const values = Array.from({ length: dimensions }, () => {
    state = (state * 1103515245 + 12345) % 2147483648
    return state / 2147483648 - 0.5
  })
  const norm = Math.hypot(...values)
  return values.map((v) => v / norm)
}

export function nearestNeighbourSql(target: TargetColumn, castType: string): string {
  return (
    `SELECT ${quoteIdent(target.key)} FROM ${quoteQualified(target.schema, target.table)} ` +
    `ORDER BY ${quoteIdent(target.column)} ${OPERATORS[target.distance]} $1::${castType} LIMIT 10`
  )
}

export async function explainNearestNeighbour(db: Queryable, target: TargetColumn): Promise<QueryPlan | undefined> {
  if (!target.type || !target.dimensions) return undefined
  const castType = `${target.type}(${target.dimensions})`
  const existing = await db.query<{ v: string }>(
    `SELECT ${quoteIdent(target.column)}::text AS v FROM ${quoteQualified(target.schema, target.table)} WHERE ${quoteIdent(target.column)} IS NOT NULL LIMIT 1`,
  )
  const vector = existing.rows[0]?.v ?? `[${syntheticQueryVector(target.dimensions).join(',')}]`
  const sql = nearestNeighbourSql(target, castType)
  const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, [vector])
  const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
  const index = /Index Scan using (\S+)/.exec(plan)?.[1] ?? null
  const scan = index ? 'index' : /Seq Scan on/.test(plan) ? 'sequential' : 'other'
  const execution = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? Number.NaN)
  return { table: `${target.schema}.${target.table}`, column: target.column, sql, plan, scan, index_name: index, execution_ms: execution }
}
