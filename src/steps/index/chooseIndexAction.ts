import type { VectorIndex } from '../../db/catalog/vocabulary.ts'

// Idempotence of the index batch: look at what already exists on the column and decide.
// A valid index that matches is kept (whatever its name); an invalid leftover is dropped and
// built again; a valid index for another distance or expression is reported, and replaced
// only when the plan says so.

export type IndexDecision =
  | { action: 'kept'; existing: VectorIndex; reason: string }
  | { action: 'created'; reason: string; drop: VectorIndex[] }
  | { action: 'rebuilt'; reason: string; drop: VectorIndex[] }
  | { action: 'replaced'; reason: string; drop: VectorIndex[] }
  | { action: 'mismatch_reported'; existing: VectorIndex; reason: string }

export function chooseIndexAction(
  existing: VectorIndex[],
  wanted: { opclass: string; expression: string; name: string },
  replaceMismatched: boolean,
): IndexDecision {
  const normalize = (sql: string) => sql.replace(/[\s"()]/g, '').toLowerCase()
  const matches = (i: VectorIndex) =>
    i.method === 'hnsw' &&
    i.opclass === wanted.opclass &&
    normalize(i.definition).includes(`hnsw${normalize(wanted.expression)}${wanted.opclass}`)
  const invalid = existing.filter((i) => !i.valid)
  const valid = existing.filter((i) => i.valid)
  const good = valid.find(matches)
  if (good) return { action: 'kept', existing: good, reason: `${good.name} already serves this query (hnsw, ${good.opclass})` }
  if (invalid.length > 0 && valid.length === 0) {
    return {
      action: 'rebuilt',
      reason: `invalid leftover ${invalid.map((i) => i.name).join(', ')} (a failed concurrent build) dropped and built again`,
      drop: invalid,
    }
  }
  const wrong = valid[0]
  if (wrong) {
    if (!replaceMismatched) {
      return {
        action: 'mismatch_reported',
        existing: wrong,
        reason: `${wrong.name} (${wrong.method}, ${wrong.opclass}) does not serve ${wanted.opclass} on ${wanted.expression}; left in place because index.replace_mismatched is false`,
      }
    }
    return {
      action: 'replaced',
      reason: `${wrong.name} (${wrong.method}, ${wrong.opclass}) replaced by ${wanted.name}`,
      drop: [...valid, ...invalid],
    }
  }
  return { action: 'created', reason: 'no vector index existed', drop: [] }
}
