import type { Queryable } from '../database.ts'
import type { QueryPlan } from './vocabulary.ts'

type Transactional = Queryable & { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }

/**
 * EXPLAIN (ANALYZE, BUFFERS) of one query, and what it says: which scan, which index, how
 * long. With forceIndex, sequential scans are disabled for this one transaction: on a small
 * table the planner rightly prefers a scan, and this shows whether an index could serve the
 * query at all.
 */
export async function explainQuery(
  db: Transactional,
  sql: string,
  params: unknown[],
  where: { table: string; column: string },
  options: { forceIndex?: boolean } = {},
): Promise<QueryPlan> {
  const explain = async (q: Queryable) => (await q.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params)).rows
  const rows = options.forceIndex
    ? await db.transaction(async (tx) => {
        await tx.exec('SET LOCAL enable_seqscan = off')
        return explain(tx)
      })
    : await explain(db)
  const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
  // EXPLAIN quotes a name that needs it ("docs_Embedding Vec_hnsw"), doubling any quote inside.
  const used = /Index Scan using ("(?:[^"]|"")+"|\S+)/.exec(plan)?.[1]
  const index = used === undefined ? null : used.startsWith('"') ? used.slice(1, -1).replace(/""/g, '"') : used
  const scan = index ? 'index' : /Seq Scan on/.test(plan) ? 'sequential' : 'other'
  const execution = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? Number.NaN)
  return { table: where.table, column: where.column, sql, plan, scan, index_name: index, execution_ms: execution }
}
