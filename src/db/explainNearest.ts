import { explainQuery } from './catalog/explainQuery.ts'
import type { QueryPlan } from './catalog/vocabulary.ts'
import type { Database } from './database.ts'
import type { SearchExpression } from './searchExpression.ts'
import type { Target } from './target.ts'

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

/**
 * EXPLAIN ANALYZE of the application's nearest-10 query on a target, with a stored embedding
 * as the query vector (a synthetic one while none is stored).
 */
export async function explainNearest(
  db: Pick<Database, 'query' | 'exec' | 'transaction'>,
  t: Target,
  search: SearchExpression,
  options: { forceIndex?: boolean } = {},
): Promise<QueryPlan> {
  const { dimensions } = t.requireVector()
  const vector = (await t.someEmbedding(db)) ?? `[${syntheticQueryVector(dimensions).join(',')}]`
  return explainQuery(
    db,
    t.nearestSql(search),
    [vector, 10],
    { table: t.name, column: t.plan.embedding_column, relation: t.table },
    options,
  )
}
