import type { Distance } from '../plan/schema.ts'
import type { VectorType } from './catalog/vocabulary.ts'

// How each distance the application may query with maps onto pgvector: the operator in
// ORDER BY, and the index operator class that serves it. An index serves a query only when
// both agree, which is why a mismatch silently means a sequential scan.

export const OPERATORS: Record<Distance, string> = {
  cosine: '<=>',
  l2: '<->',
  inner_product: '<#>',
}

export function operatorClass(distance: Distance, type: VectorType): string {
  const suffix = { cosine: 'cosine_ops', l2: 'l2_ops', inner_product: 'ip_ops' }[distance]
  return `${type}_${suffix}`
}

/** The distance an operator class serves, or undefined for one that is not a vector distance we know. */
export function distanceOfOperatorClass(opclass: string): Distance | undefined {
  if (opclass.endsWith('_cosine_ops')) return 'cosine'
  if (opclass.endsWith('_l2_ops')) return 'l2'
  if (opclass.endsWith('_ip_ops')) return 'inner_product'
  return undefined
}

/** pgvector can index `vector` up to 2,000 dimensions with HNSW, `halfvec` up to 4,000, `bit` up to 64,000. */
export const MAX_INDEXABLE_DIMENSIONS: Record<VectorType | 'bit', number> = { vector: 2000, halfvec: 4000, bit: 64000 }
