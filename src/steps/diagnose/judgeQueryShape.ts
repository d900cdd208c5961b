import { OPERATORS } from '../../db/vectorOps.ts'
import type { Distance } from '../../plan/schema.ts'

// Whether an HNSW index can serve one of the application's queries, read from its text. An
// index answers `ORDER BY <distance> LIMIT k` and nothing else: a `WHERE distance < x` reads
// every row, an ORDER BY without a LIMIT sorts every row, and an operator of another distance
// than the index's is not served by it. A filter beside the ORDER BY is served, but the plain
// scan returns at most hnsw.ef_search rows before the filter: one that leaves few rows needs
// pgvector 0.8's iterative scan (the validate batch measures how much).

export interface QueryShape {
  servable: boolean
  filtered: boolean
  verdict: string
}

export function judgeQueryShape(sql: string, distance: Distance): QueryShape {
  const text = sql.replace(/--[^\n]*/g, ' ').replace(/\s+/g, ' ')
  const operators = Object.entries(OPERATORS) as [Distance, string][]
  const orderBy = /\border by\b(.*?)(\blimit\b|\boffset\b|$)/i.exec(text)?.[1] ?? ''
  const where = /\bwhere\b(.*?)(\border by\b|\bgroup by\b|\blimit\b|$)/i.exec(text)?.[1] ?? ''
  const ordered = operators.find(([, op]) => orderBy.includes(op))
  const filtered = where.trim() !== ''
  const byDistanceInWhere = operators.some(([, op]) => where.includes(op))
  if (!ordered) {
    return {
      servable: false,
      filtered,
      verdict: byDistanceInWhere
        ? 'no index can serve it: a distance compared in WHERE reads every row; write ORDER BY the distance with a LIMIT (and keep the rows under the threshold from those)'
        : 'it does not order by a vector distance: no vector index serves it',
    }
  }
  if (ordered[0] !== distance) {
    return {
      servable: false,
      filtered,
      verdict: `it orders by ${ordered[1]} (${ordered[0]}), but the plan's distance is ${distance} (${OPERATORS[distance]}): the index built for the plan will not serve it`,
    }
  }
  if (!/\blimit\b/i.test(text)) {
    return { servable: false, filtered, verdict: 'it orders by the distance without a LIMIT: every row is sorted; add LIMIT k' }
  }
  return {
    servable: true,
    filtered,
    verdict: filtered
      ? 'an index can serve it (ORDER BY distance LIMIT k); its filter is applied to the rows the index returns, so a filter that leaves few rows needs hnsw.iterative_scan (pgvector 0.8)'
      : 'an index can serve it (ORDER BY distance LIMIT k)',
  }
}
