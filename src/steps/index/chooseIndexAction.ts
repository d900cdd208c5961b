import type { VectorIndex } from '../../db/catalog/vocabulary.ts'

// Idempotence of the index batch: look at what already exists on the column and decide.
// A valid index that matches is kept (whatever its name). Search must work at the end of the
// plan, so an index the application's query cannot use (another distance, method or
// expression, or invalid) never stands in the way: the right one is built beside it, and the
// old one is reported, and dropped only when the plan says so (index.replace_mismatched). The
// one exception is an invalid index under the runner's own name, the leftover of its own
// failed concurrent build: CREATE INDEX IF NOT EXISTS would keep it, so it goes first. On a
// partitioned table an invalid index of the runner's that matches is an earlier run's, not
// yet attached to every partition: it is completed, not dropped.

export type IndexAction = 'kept' | 'created' | 'rebuilt' | 'replaced' | 'completed'

export interface IndexDecision {
  action: IndexAction
  reason: string
  /** The index that serves the query at the end: the one kept or completed, or the one to build. */
  name: string
  /** The runner's own invalid leftovers, dropped before the build. */
  dropBefore: VectorIndex[]
  /** Unusable indexes the plan asked to replace, dropped once the new one is built. */
  dropAfter: VectorIndex[]
  /** Unusable indexes left in place: reported with their size, since every write still maintains them. */
  beside: VectorIndex[]
}

const describe = (i: VectorIndex) => `${i.name} (${i.method}, ${i.opclass}${i.valid ? '' : ', invalid'})`

/** An HNSW index on the expression the query orders by, with the operator class of its distance. */
export function servesQuery(index: VectorIndex, wanted: { opclass: string; expression: string }): boolean {
  const normalize = (sql: string) => sql.replace(/[\s"()]/g, '').toLowerCase()
  return (
    index.method === 'hnsw' &&
    index.opclass === wanted.opclass &&
    normalize(index.definition).includes(`hnsw${normalize(wanted.expression)}${wanted.opclass}`)
  )
}

export function chooseIndexAction(
  existing: VectorIndex[],
  wanted: { opclass: string; expression: string; name: string },
  options: { replaceMismatched: boolean; partitioned: boolean },
): IndexDecision {
  const matches = (i: VectorIndex) => servesQuery(i, wanted)
  const good = existing.find((i) => i.valid && matches(i))
  // An invalid index under the runner's name and of the runner's definition is its own failed
  // build's leftover; under that name with another definition, it is somebody else's.
  const own = existing.find((i) => i.name === wanted.name && !i.valid && matches(i))
  const unusable = existing.filter((i) => i !== good && i !== own)
  const leftBeside = options.replaceMismatched ? [] : unusable
  const replaced = options.replaceMismatched ? unusable : []
  if (good) {
    const reason = `${good.name} already serves this query (hnsw, ${good.opclass})`
    return { action: 'kept', reason, name: good.name, dropBefore: [], dropAfter: replaced, beside: leftBeside }
  }
  const besideNote = leftBeside.length
    ? `; ${leftBeside.map(describe).join(', ')} cannot serve it and is left beside it (index.replace_mismatched: true drops it)`
    : ''
  if (own && options.partitioned) {
    const reason = `${own.name} was left by an earlier run before every partition was attached: completed${besideNote}`
    return { action: 'completed', reason, name: own.name, dropBefore: [], dropAfter: replaced, beside: leftBeside }
  }
  if (own) {
    const reason = `invalid leftover ${own.name} (a failed concurrent build) dropped and built again${besideNote}`
    return { action: 'rebuilt', reason, name: wanted.name, dropBefore: [own], dropAfter: replaced, beside: leftBeside }
  }
  if (replaced.length) {
    const reason = `${replaced.map(describe).join(', ')} replaced by ${wanted.name}`
    return { action: 'replaced', reason, name: wanted.name, dropBefore: [], dropAfter: replaced, beside: [] }
  }
  const reason = leftBeside.length
    ? `built beside ${leftBeside.map(describe).join(', ')}, which cannot serve this query (left in place; index.replace_mismatched: true drops it)`
    : 'no vector index existed'
  return { action: 'created', reason, name: wanted.name, dropBefore: [], dropAfter: [], beside: leftBeside }
}
