import type { Database } from '../../db/database.ts'
import type { Target } from '../../db/target.ts'
import type { Plan } from '../../plan/schema.ts'
import {
  percentiles,
  type RunsByPlan,
  recall,
  runAt,
  runExact,
  type SearchQuery,
  type SearchSetting,
  type TimedRun,
} from './measureSearch.ts'
import type { QueryMeasurement } from './output.ts'
import { recommendSetting, type SweepPoint, sweepSettled } from './recommendSetting.ts'

// One search query measured as the application runs it, claiming only what was measured: the
// exact answers once; then, when a valid index can serve the query, hnsw.ef_search swept (and
// iterative scan, for a filtered query the plain scan starves), with the planner's own choice of
// scan recorded at each setting; then the recommended setting and pgvector's default, each over
// several rounds, so the p95 that judges the latency criterion comes with its spread.

/** On a table this small the planner rightly prefers an exact scan; the index must at least be able to serve the query. */
export const SMALL_TABLE_ROWS = 10_000

export interface QueryContext {
  db: Database
  plan: Plan
  target: Target
  rows: number
  /** The valid index on the column that the query can use, or null. */
  usableIndex: string | null
  iterativeScan: boolean
  signal: AbortSignal
  /** What the application runs the query at: the plan's settings for it, else pgvector's defaults. */
  appSetting: SearchSetting
  /** The application's role, when the runner may measure as it (SET ROLE); null: measured as the runner's. */
  appRole: string | null
}

const same = (a: SearchSetting, b: SearchSetting) => a.ef_search === b.ef_search && a.iterative_scan === b.iterative_scan
const firstOf = (run: TimedRun, n: number): TimedRun => ({
  ms: run.ms.slice(0, n),
  ids: run.ids.slice(0, n),
  distances: run.distances?.slice(0, n) ?? null,
})

/**
 * The statements that apply a setting where the application runs one query: SET LOCAL, in the
 * transaction of that query, never for the role or the database (another table's query may
 * need another setting, and a lower one may turn its index off).
 */
export function applyStatements(setting: SearchSetting): string[] {
  return [
    `SET LOCAL hnsw.ef_search = ${setting.ef_search}`,
    ...(setting.iterative_scan !== 'off' ? [`SET LOCAL hnsw.iterative_scan = ${setting.iterative_scan}`] : []),
  ]
}

/** Where the application runs the query, the line that applies the statements first, in the same transaction, per driver. */
export function driverLines(apply: string[]): { driver: string; line: string }[] {
  const py = (call: (s: string) => string) => apply.map(call).join('; ')
  return [
    { driver: 'SQLAlchemy', line: py((s) => `session.execute(text("${s}"))`) },
    { driver: 'psycopg', line: py((s) => `cur.execute("${s}")`) },
    { driver: 'node-postgres', line: apply.map((s) => `await client.query('${s}')`).join('; ') },
  ]
}

export async function measureQuery(ctx: QueryContext, query: SearchQuery, vectors: string[]): Promise<QueryMeasurement> {
  const { db, plan, target } = ctx
  const v = plan.validate
  const exactVectors = vectors.slice(0, v.exact_queries)
  const exact = await runExact(db, query, exactVectors)

  const point = async (
    setting: SearchSetting,
    forced: boolean,
    role: string | null = null,
    runsByPlan?: RunsByPlan,
  ): Promise<SweepPoint & { run: TimedRun }> => {
    const run = await runAt(db, target.table, query, vectors, setting, forced, role, runsByPlan)
    const p = percentiles(run.ms)
    return {
      ...setting,
      recall: recall(firstOf(run, exactVectors.length), exact),
      p50: p.p50,
      p95: p.p95,
      scan: run.scan,
      index_name: run.index_name,
      forced,
      run,
    }
  }
  /** The setting over every round, as the application's role, pooled. */
  const rounds = async (setting: SearchSetting) => {
    const runs: (SweepPoint & { run: TimedRun })[] = []
    let last: (SweepPoint & { run: TimedRun }) | undefined
    while (runs.length < v.rounds && !(runs.length > 0 && ctx.signal.aborted)) runs.push((last = await point(setting, false, ctx.appRole)))
    const pooled = percentiles(runs.flatMap((r) => r.run.ms))
    return {
      setting,
      scan: last!.scan,
      index_name: last!.index_name,
      ...pooled,
      rounds_p95: runs.map((r) => r.p95),
      recall: runs[0]!.recall,
    }
  }
  const base = {
    name: query.name,
    sql: query.sql,
    limit: query.limit,
    queries: vectors.length,
    exact_queries: exactVectors.length,
    rounds: v.rounds,
    exact: percentiles(exact.ms),
  }
  if (!ctx.usableIndex) {
    return {
      ...base,
      index_usable: false,
      sweep: [],
      recommended: null,
      recall_target_reached: false,
      why: 'no valid vector index on the column can serve this query: no recall or ef_search is claimed, and its latency is what the application gets today',
      measured_as: ctx.appRole,
      at_default: await rounds(ctx.appSetting),
      at_recommended: null,
      apply: [],
    }
  }
  // HNSW hands over at most ef_search rows: the LIMIT itself is swept when no candidate reaches it
  // (a binary index's re-ranked query asks for k x rerank_factor), up to pgvector's maximum, 1,000.
  const reach = Math.min(query.limit, 1000)
  const candidates = [...new Set([...v.ef_search_candidates, ...(v.ef_search_candidates.some((ef) => ef >= reach) ? [] : [reach])])].sort(
    (a, b) => a - b,
  )
  await runAt(db, target.table, query, vectors.slice(0, 20), { ef_search: candidates.at(-1)!, iterative_scan: 'off' }) // warm-up
  const goal = { indexName: ctx.usableIndex, limit: reach, recallTarget: v.recall_target }
  const sweep: (SweepPoint & { run: TimedRun })[] = []
  // A plan that uses no index runs the same at every setting: timed once in the sweep (never in the rounds, whose spread is the point).
  const runsByPlan: RunsByPlan = new Map()
  /** Up the candidates, until the ones left cannot change the recommendation (the largest are the slowest); returns those left. */
  const sweepAll = async (iterative: SearchSetting['iterative_scan'], forced: boolean): Promise<number[]> => {
    const line: SweepPoint[] = []
    for (const [i, ef] of candidates.entries()) {
      if (ctx.signal.aborted) break
      const p = await point({ ef_search: ef, iterative_scan: iterative }, forced, null, runsByPlan)
      sweep.push(p)
      line.push(p)
      const judged = forced ? sweep.filter((q) => q.forced) : sweep
      if (sweepSettled(judged, goal, ctx.appSetting, line, candidates.slice(i + 1))) return candidates.slice(i + 1)
    }
    return []
  }
  let unmeasured = await sweepAll('off', false)
  let recommendation = recommendSetting(sweep, goal, ctx.appSetting)
  // A filter that leaves few rows starves the plain scan (it returns at most ef_search rows
  // before filtering): pgvector 0.8's iterative scan keeps going until LIMIT rows pass.
  if (!recommendation.recall_target_reached && /\bwhere\b/i.test(query.sql) && ctx.iterativeScan) {
    unmeasured = await sweepAll('relaxed_order', false)
    recommendation = recommendSetting(sweep, goal, ctx.appSetting)
  }
  let why = recommendation.why
  if (!recommendation.setting && ctx.rows < SMALL_TABLE_ROWS && sweep.every((p) => p.scan !== 'index')) {
    unmeasured = await sweepAll('off', true)
    recommendation = recommendSetting(
      sweep.filter((p) => p.forced),
      goal,
      ctx.appSetting,
    )
    why = `the planner prefers an exact sequential scan on ${ctx.rows.toLocaleString('en-US')} rows at every setting (exact, and fast at this size); measured with sequential scans disabled, for when the table grows: ${recommendation.why}`
  }
  if (unmeasured.length) why += `; ef_search ${unmeasured.join(', ')} not measured: larger settings cannot change this`
  // As the application runs it, and again with the recommendation applied: both, as its role.
  const atDefault = await rounds(ctx.appSetting)
  const recommended = recommendation.setting
  const atRecommended = !recommended ? null : same(recommended, ctx.appSetting) ? atDefault : await rounds(recommended)
  const exactP95 = base.exact.p95
  if (atRecommended && atRecommended.p95 > exactP95) {
    why += `; the exact answer (index scans off) was faster here, p95 ${exactP95.toFixed(2)} ms against ${atRecommended.p95.toFixed(2)} ms${/\bwhere\b/i.test(query.sql) ? ": for a filter this selective, an index on the filter's columns (or a partial HNSW index per value) serves it better than the HNSW index on the whole table" : ''}`
  }
  return {
    ...base,
    index_usable: true,
    sweep: sweep.map(({ run: _run, ...p }) => p),
    recommended,
    recall_target_reached: recommendation.recall_target_reached,
    why,
    measured_as: ctx.appRole,
    at_default: atDefault,
    at_recommended: atRecommended,
    apply: recommended && !same(recommended, ctx.appSetting) ? applyStatements(recommended) : [],
  }
}
