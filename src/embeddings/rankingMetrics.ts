// Ranking quality over labelled queries. recall@k is capped: the relevant rows found in the
// top k divided by min(k, relevant rows), so a query with 50 relevant rows can still score 1.

export interface Ranking {
  ranked: readonly (number | string)[]
  relevant: ReadonlySet<number | string>
}

export function rankingMetrics(rankings: Ranking[], k: number): { recallAtK: number; mrr: number; hits: number } {
  let recall = 0
  let reciprocal = 0
  let hits = 0
  for (const { ranked, relevant } of rankings) {
    const top = ranked.slice(0, k)
    const found = top.filter((id) => relevant.has(id)).length
    recall += relevant.size ? found / Math.min(k, relevant.size) : 0
    if (found > 0) hits++
    const first = ranked.findIndex((id) => relevant.has(id))
    reciprocal += first >= 0 ? 1 / (first + 1) : 0
  }
  const n = rankings.length || 1
  return { recallAtK: recall / n, mrr: reciprocal / n, hits }
}
