import type { Batch } from './schema.ts'

/**
 * Orders batches so that each comes after everything it depends on; among batches that are
 * ready at the same time, the plan's own order wins. Throws on a cycle, naming it.
 */
export function orderBatches<B extends Pick<Batch, 'id' | 'depends_on'>>(batches: readonly B[]): B[] {
  const byId = new Map(batches.map((b) => [b.id, b]))
  const ordered: B[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (batch: B, trail: string[]) => {
    const seen = state.get(batch.id)
    if (seen === 'done') return
    if (seen === 'visiting') {
      const cycle = [...trail.slice(trail.indexOf(batch.id)), batch.id]
      throw new Error(`batches depend on each other in a cycle: ${cycle.join(' -> ')}`)
    }
    state.set(batch.id, 'visiting')
    for (const dep of batch.depends_on) {
      const target = byId.get(dep)
      if (target) visit(target, [...trail, batch.id])
    }
    state.set(batch.id, 'done')
    ordered.push(batch)
  }
  for (const batch of batches) visit(batch, [])
  return ordered
}

/** Every batch that `batch` depends on, directly or through others. */
export function dependenciesOf<B extends Pick<Batch, 'id' | 'depends_on'>>(batch: B, batches: readonly B[]): B[] {
  const byId = new Map(batches.map((b) => [b.id, b]))
  const found = new Map<string, B>()
  const walk = (b: B) => {
    for (const dep of b.depends_on) {
      const target = byId.get(dep)
      if (target && !found.has(dep)) {
        found.set(dep, target)
        walk(target)
      }
    }
  }
  walk(batch)
  return batches.filter((b) => found.has(b.id))
}
