import type { SearchSetting } from './measureSearch.ts'

// Which pgvector setting to recommend for a query, from what the sweep measured. Only a setting
// the application can run as measured counts: at or above the query's LIMIT (HNSW returns at
// most ef_search rows), and one at which the planner still uses the index (at a low ef_search it
// may prefer a sequential scan, and then the recall and latency are the scan's, not the
// index's). The planner must keep the index at the neighbouring candidates too: its choice turns
// on statistics that autovacuum refreshes, so a setting at the edge (measured here: ef_search 20
// a sequential scan after an ANALYZE, 40 the index) would recommend the index off by the next
// refresh, and three sessions would give three answers. Of those, the smallest that reaches
// the recall target would sit on the edge: the next one up is recommended, so the target holds
// as the data changes. A plain scan is preferred to an iterative one. The sweep goes up the
// candidates and stops once the ones left cannot change the recommendation (sweepSettled): the
// largest settings are the slowest to measure and, past the margin, move nothing.

export interface SweepPoint extends SearchSetting {
  recall: number
  p50: number
  p95: number
  scan: 'index' | 'sequential' | 'other'
  /** The vector index the planner used at this setting (the partitioned parent's name for a partitioned table). */
  index_name: string | null
  /** Measured with sequential scans disabled: what the index gives, not what the planner chose. */
  forced: boolean
}

export interface Recommendation {
  setting: SearchSetting | null
  recall_target_reached: boolean
  why: string
  /** kept: the application's own; margin: a step above the smallest to reach the target; edge: that smallest, nothing above it; best: none reached it. */
  basis: 'kept' | 'margin' | 'edge' | 'best' | 'none'
}

const describe = (p: SearchSetting) =>
  `ef_search ${p.ef_search}${p.iterative_scan === 'off' ? '' : ` with iterative_scan ${p.iterative_scan}`}`

type Goal = { indexName: string; limit: number; recallTarget: number }

export function recommendSetting(
  points: SweepPoint[],
  query: Goal,
  /** What the application runs the query at now: kept when it already holds, so nothing changes for nothing. */
  current?: SearchSetting,
  /** Points measured only as a neighbour so far (the largest of a sweep under way), not yet eligible themselves. */
  undecided: SweepPoint[] = [],
): Recommendation {
  const usesIndex = (p: SweepPoint | undefined) => !p || p.index_name === query.indexName
  const neighboursKeepIt = (p: SweepPoint) => {
    const line = points
      .filter((q) => q.iterative_scan === p.iterative_scan && q.forced === p.forced)
      .sort((a, b) => a.ef_search - b.ef_search)
    const i = line.indexOf(p)
    return usesIndex(line[i - 1]) && usesIndex(line[i + 1])
  }
  const eligible = points
    .filter((p) => p.ef_search >= query.limit && p.index_name === query.indexName && neighboursKeepIt(p) && !undecided.includes(p))
    .sort((a, b) => Number(a.iterative_scan !== 'off') - Number(b.iterative_scan !== 'off') || a.ef_search - b.ef_search)
  if (eligible.length === 0) {
    return {
      setting: null,
      recall_target_reached: false,
      why: `at no measured setting at or above the query's LIMIT ${query.limit} does the planner keep ${query.indexName}, there and at the settings either side: no recall or ef_search is claimed`,
      basis: 'none',
    }
  }
  const setting = (p: SweepPoint): SearchSetting => ({ ef_search: p.ef_search, iterative_scan: p.iterative_scan })
  const kept = current && eligible.find((p) => p.ef_search === current.ef_search && p.iterative_scan === current.iterative_scan)
  if (kept && kept.recall >= query.recallTarget) {
    return {
      setting: setting(kept),
      recall_target_reached: true,
      why: `the application's own setting, ${describe(kept)}, already reaches recall ${query.recallTarget} (${kept.recall.toFixed(3)}) with the planner keeping the index there and either side: nothing to change`,
      basis: 'kept',
    }
  }
  const firstMet = eligible.findIndex((p) => p.recall >= query.recallTarget)
  if (firstMet < 0) {
    const best = eligible.reduce((a, b) => (b.recall > a.recall ? b : a))
    return {
      setting: setting(best),
      recall_target_reached: false,
      why: `no setting reached recall ${query.recallTarget}; the best measured, ${describe(best)}, gave ${best.recall.toFixed(3)}`,
      basis: 'best',
    }
  }
  const met = eligible[firstMet]!
  const margin = eligible.slice(firstMet + 1).find((p) => p.iterative_scan === met.iterative_scan && p.recall >= query.recallTarget)
  return {
    setting: setting(margin ?? met),
    recall_target_reached: true,
    why: margin
      ? `${describe(met)} was the smallest to reach recall ${query.recallTarget} (${met.recall.toFixed(3)}); one step above it, ${describe(margin)} (${margin.recall.toFixed(3)}), keeps a margin`
      : `${describe(met)} was the smallest to reach recall ${query.recallTarget} (${met.recall.toFixed(3)}), and the largest candidate measured: no margin is left among the candidates`,
    basis: margin ? 'margin' : 'edge',
  }
}

/**
 * Whether the candidates still to measure in a sweep going up (stillToMeasure) can change the
 * recommendation. A point is judged with its neighbours, so the largest measured is only a
 * neighbour yet; the application's own setting, kept when it holds, must have been judged; and
 * then the recommendation is settled once it is the application's own or a step of margin above
 * the smallest to reach the target: every setting still to measure is larger than both.
 */
export function sweepSettled(
  points: SweepPoint[],
  query: Goal,
  current: SearchSetting | undefined,
  line: SweepPoint[],
  stillToMeasure: number[],
): boolean {
  if (stillToMeasure.length === 0) return true
  const largest = line.at(-1)
  if (!largest || (current && current.iterative_scan === largest.iterative_scan && current.ef_search >= largest.ef_search)) return false
  const basis = recommendSetting(points, query, current, [largest]).basis
  return basis === 'kept' || basis === 'margin'
}
