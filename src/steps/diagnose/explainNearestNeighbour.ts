import type { Queryable } from '../../db/database.ts'
import { quoteIdent, quoteQualified } from '../../db/quote.ts'
import { searchExpression, type SearchExpression } from '../../db/searchExpression.ts'
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

/** The application's search as the column is declared (no half-precision cast). */
export function plainSearch(target: TargetColumn): SearchExpression | undefined {
  if (!target.type || !target.dimensions) return undefined
  return searchExpression(target.column, target.dimensions, target.type, target.distance, 'full')
}

export function nearestNeighbourSql(target: TargetColumn, search: SearchExpression): string {
  return `SELECT ${quoteIdent(target.key)} FROM ${quoteQualified(target.schema, target.table)} ORDER BY ${search.expression} ${search.operator} $1::${search.castType} LIMIT 10`
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the nearest-10 query. With forceIndex, sequential scans are
 * disabled for this one transaction: on a small table the planner rightly prefers a scan, and
 * this shows whether the index could serve the query at all.
 */
export async function explainNearestNeighbour(
  db: Queryable & { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> },
  target: TargetColumn,
  search: SearchExpression | undefined = plainSearch(target),
  options: { forceIndex?: boolean } = {},
): Promise<QueryPlan | undefined> {
  if (!search || !target.dimensions) return undefined
  const existing = await db.query<{ v: string }>(
    `SELECT ${quoteIdent(target.column)}::text AS v FROM ${quoteQualified(target.schema, target.table)} WHERE ${quoteIdent(target.column)} IS NOT NULL LIMIT 1`,
  )
  const vector = existing.rows[0]?.v ?? `[${syntheticQueryVector(target.dimensions).join(',')}]`
  const sql = nearestNeighbourSql(target, search)
  const explain = async (q: Queryable) => (await q.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, [vector])).rows
  const rows = options.forceIndex
    ? await db.transaction(async (tx) => {
        await tx.exec('SET LOCAL enable_seqscan = off')
        return explain(tx)
      })
    : await explain(db)
  const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
  const index = /Index Scan using (\S+)/.exec(plan)?.[1] ?? null
  const scan = index ? 'index' : /Seq Scan on/.test(plan) ? 'sequential' : 'other'
  const execution = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? Number.NaN)
  return { table: `${target.schema}.${target.table}`, column: target.column, sql, plan, scan, index_name: index, execution_ms: execution }
}
