import { readScan } from '../../db/catalog/explainQuery.ts'
import type { Database, Queryable } from '../../db/database.ts'
import { withSettings } from '../../db/withSettings.ts'

// Latency and recall of one of the application's search queries, as the application sees it:
// each query timed on the client, round trip included, with the plan the planner chooses at
// that setting recorded beside it. The exact answers come from the same query with index scans
// disabled (the same filter, the same limit), computed once and reused for every setting.

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

/** A query the application runs: $1 is the query vector (text form); the rest are its sample values. */
export interface SearchQuery {
  name: string
  sql: string
  params: (vector: string) => unknown[]
  /** Its LIMIT: an ef_search below it cannot return that many rows. */
  limit: number
  /** The query whose answers are exact, when not this one with index scans off (a re-ranked binary search: the full vectors' nearest). */
  exactSql?: string
}

/** The pgvector settings a query runs with. */
export interface SearchSetting {
  ef_search: number
  iterative_scan: 'off' | 'relaxed_order'
}

export const PGVECTOR_DEFAULT: SearchSetting = { ef_search: 40, iterative_scan: 'off' }

export interface TimedRun {
  ms: number[]
  ids: string[][]
  /** Each row's distance, when the query returns one (a column named distance). */
  distances: number[][] | null
}

async function timeQueries(session: Queryable, query: SearchQuery, vectors: string[]): Promise<TimedRun> {
  const run: TimedRun = { ms: [], ids: [], distances: [] }
  for (const vector of vectors) {
    const started = performance.now()
    const { rows } = await session.query<Record<string, unknown>>(query.sql, query.params(vector))
    run.ms.push(performance.now() - started)
    run.ids.push(rows.map((r) => (r.key !== undefined ? String(r.key) : JSON.stringify(r))))
    if (run.distances && rows.every((r) => typeof r.distance === 'number')) run.distances.push(rows.map((r) => r.distance as number))
    else run.distances = null
  }
  return run
}

const settingsOf = (s: SearchSetting, forceIndex: boolean): Record<string, string | number> => ({
  'hnsw.ef_search': s.ef_search,
  ...(s.iterative_scan !== 'off' ? { 'hnsw.iterative_scan': s.iterative_scan } : {}),
  ...(forceIndex ? { enable_seqscan: 'off' } : {}),
})

/**
 * The runs of plans that use no index, by plan: pgvector's settings cannot change how such a plan
 * runs, so a sweep times it at the first setting the planner chose it and reuses that run at
 * the others (a small table's sweep is otherwise the same sequential scan timed at every setting).
 */
export type RunsByPlan = Map<string, TimedRun>
const usesNoIndex = (plan: string) => !/\bIndex\b|\bBitmap\b/.test(plan)

/**
 * Runs the query once per vector at a setting, and EXPLAINs it (without ANALYZE) there: which
 * scan the planner chose. forceIndex disables sequential scans, to see what the index would give.
 */
export async function runAt(
  db: Database,
  relation: string,
  query: SearchQuery,
  vectors: string[],
  setting: SearchSetting,
  forceIndex = false,
  /** The role to run it as (the application's): what it may see and use is what the application gets. */
  role?: string | null,
  /** Where a sweep keeps the runs of plans that use no index, to time each once. */
  runsByPlan?: RunsByPlan,
): Promise<TimedRun & { scan: 'index' | 'sequential' | 'other'; index_name: string | null }> {
  return withSettings(db, settingsOf(setting, forceIndex), async (session) => {
    if (role) await session.query(`SELECT set_config('role', $1, false)`, [role])
    try {
      const { rows } = await session.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.sql}`, query.params(vectors[0]!))
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
      const reusable = runsByPlan && usesNoIndex(plan) ? `${role ?? ''}\n${plan}` : undefined
      const timed = (reusable && runsByPlan!.get(reusable)) || (await timeQueries(session, query, vectors))
      if (reusable) runsByPlan!.set(reusable, timed)
      if (role) await session.exec('RESET ROLE') // (the catalog read below is the runner's own)
      return { ...timed, ...(await readScan(session, relation, plan)) }
    } finally {
      if (role) await session.exec('RESET ROLE').catch(() => {})
    }
  })
}

/** The exact answers: index and bitmap scans off for the session, the same query otherwise. */
export async function runExact(db: Database, query: SearchQuery, vectors: string[]): Promise<TimedRun> {
  const exact = query.exactSql ? { ...query, sql: query.exactSql } : query
  return withSettings(db, { enable_indexscan: 'off', enable_bitmapscan: 'off' }, (session) => timeQueries(session, exact, vectors))
}

/**
 * recall@k against the exact answers. By distance when both runs have one, as ann-benchmarks
 * counts it: a returned row is a true neighbour when it is no farther than the exact k-th
 * nearest (comparing ids would punish the index for picking another of several rows at exactly
 * the same distance). By the rows themselves otherwise.
 */
export function recall(found: TimedRun, exact: TimedRun, epsilon = 1e-6): number {
  let sum = 0
  exact.ids.forEach((truth, i) => {
    if (truth.length === 0) {
      sum += 1
      return
    }
    if (found.distances && exact.distances) {
      const limit = exact.distances[i]![truth.length - 1]! + epsilon
      sum += Math.min(truth.length, (found.distances[i] ?? []).filter((d) => d <= limit).length) / truth.length
    } else {
      const got = new Set(found.ids[i] ?? [])
      sum += truth.filter((id) => got.has(id)).length / truth.length
    }
  })
  return exact.ids.length ? sum / exact.ids.length : Number.NaN
}
