import type { Database, Queryable } from '../../db/database.ts'
import { withSettings } from '../../db/withSettings.ts'

// Latency and recall of the application's nearest-10 query, as the application sees it: each
// query timed on the client, round trip included. The exact answer comes from the same query
// with index scans disabled for that session.

export interface Percentiles {
  p50: number
  p95: number
  p99: number
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}

export interface TimedRun {
  ms: number[]
  ids: string[][]
  distances: number[][]
}

/** Runs a nearest-k query (Target.nearestSql: $1 the vector, $2 the limit) once per vector, timing each on the client. */
async function timeQueries(session: Queryable, sql: string, vectors: string[], limit: number): Promise<TimedRun> {
  const run: TimedRun = { ms: [], ids: [], distances: [] }
  for (const vector of vectors) {
    const started = performance.now()
    const { rows } = await session.query<{ key: string; distance: number }>(sql, [vector, limit])
    run.ms.push(performance.now() - started)
    run.ids.push(rows.map((r) => r.key))
    run.distances.push(rows.map((r) => r.distance))
  }
  return run
}

export async function runIndexed(db: Database, sql: string, vectors: string[], efSearch: number, limit = 10): Promise<TimedRun> {
  return withSettings(db, { 'hnsw.ef_search': efSearch }, (session) => timeQueries(session, sql, vectors, limit))
}

export async function runExact(db: Database, sql: string, vectors: string[], limit = 10): Promise<TimedRun> {
  return withSettings(db, { enable_indexscan: 'off', enable_bitmapscan: 'off' }, (session) => timeQueries(session, sql, vectors, limit))
}

/**
 * recall@10 by distance, as ann-benchmarks counts it: a returned row is a true neighbour when
 * it is no farther than the exact 10th nearest. Comparing ids instead would punish the index
 * for picking a different one of several rows at exactly the same distance (duplicates).
 */
export function recallAt10(found: number[][], exact: number[][], epsilon = 1e-6): number {
  let sum = 0
  exact.forEach((truth, i) => {
    if (truth.length === 0) {
      sum += 1
      return
    }
    const limit = truth[truth.length - 1]! + epsilon
    sum += Math.min(truth.length, (found[i] ?? []).filter((d) => d <= limit).length) / truth.length
  })
  return exact.length ? sum / exact.length : Number.NaN
}
