import type { Queryable } from '../../db/database.ts'
import { OPERATORS } from '../../db/vectorOps.ts'
import type { Distance } from '../../plan/schema.ts'

// Whether an HNSW index can serve one of the application's queries, read from the plan
// PostgreSQL makes of it (EXPLAIN VERBOSE, nothing run), not from its text: the plan has
// resolved the aliases (ORDER BY distance, as LlamaIndex, LangChain and SQLAlchemy's .label()
// write it), the casts, the joins and the subqueries. An index answers an ORDER BY of its
// distance under a LIMIT and nothing else: a distance compared in a filter reads every row, a
// sort without a LIMIT sorts every row, and another distance than the index's is not served.
// A filter beside the ORDER BY is served, but the plain scan returns at most hnsw.ef_search
// rows before the filter: one that leaves few rows needs pgvector 0.8's iterative scan.

export interface QueryShape {
  servable: boolean
  filtered: boolean
  verdict: string
}

interface PlanNode {
  'Node Type': string
  'Sort Key'?: string[]
  'Order By'?: string
  Filter?: string
  'Join Filter'?: string
  'Index Name'?: string
  Plans?: PlanNode[]
}

const JOINS = new Set(['Nested Loop', 'Hash Join', 'Merge Join'])

/** The plan of a query with these parameters, judged. */
export async function judgeQuery(db: Queryable, sql: string, params: unknown[], distance: Distance): Promise<QueryShape> {
  const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (VERBOSE, FORMAT JSON) ${sql}`, params)
  const json = rows[0]!['QUERY PLAN']
  const plan = (typeof json === 'string' ? JSON.parse(json) : json) as { Plan: PlanNode }[]
  return judgePlan(plan[0]!.Plan, distance)
}

/** The judgement itself, on a plan's root node. */
export function judgePlan(root: PlanNode, distance: Distance): QueryShape {
  const operators = Object.entries(OPERATORS) as [Distance, string][]
  const distanceIn = (expression: string | undefined) => operators.find(([, op]) => expression?.includes(` ${op} `))
  let ordered: { by: [Distance, string]; limited: boolean; index?: string } | undefined
  let filtered = false
  let comparedInFilter = false
  const visit = (node: PlanNode, underLimit: boolean) => {
    const limited = underLimit || node['Node Type'] === 'Limit'
    if (node.Filter || node['Join Filter'] || JOINS.has(node['Node Type'])) filtered = true
    if (distanceIn(node.Filter) || distanceIn(node['Join Filter'])) comparedInFilter = true
    const byIndex = distanceIn(node['Order By'])
    const bySort = (node['Sort Key'] ?? []).map(distanceIn).find(Boolean)
    if (!ordered && (byIndex || bySort)) ordered = { by: (byIndex ?? bySort)!, limited, index: byIndex ? node['Index Name'] : undefined }
    for (const child of node.Plans ?? []) visit(child, limited)
  }
  visit(root, false)
  if (!ordered) {
    return {
      servable: false,
      filtered,
      verdict: comparedInFilter
        ? 'no index can serve it: a distance compared in WHERE reads every row; write ORDER BY the distance with a LIMIT (and keep the rows under the threshold from those)'
        : 'it does not order by a vector distance: no vector index serves it',
    }
  }
  const [by, operator] = ordered.by
  if (by !== distance) {
    return {
      servable: false,
      filtered,
      verdict: `it orders by ${operator} (${by}), but the plan's distance is ${distance} (${OPERATORS[distance]}): the index built for the plan will not serve it`,
    }
  }
  if (!ordered.limited) {
    return { servable: false, filtered, verdict: 'it orders by the distance without a LIMIT: every row is sorted; add LIMIT k' }
  }
  const served = ordered.index ? `the index ${ordered.index} serves it now` : 'an index can serve it'
  return {
    servable: true,
    filtered,
    verdict: filtered
      ? `${served} (ORDER BY distance LIMIT k); its filter is applied to the rows the index returns, so a filter that leaves few rows needs hnsw.iterative_scan (pgvector 0.8)`
      : `${served} (ORDER BY distance LIMIT k)`,
  }
}
