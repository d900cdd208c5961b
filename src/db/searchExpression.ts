import type { Distance } from '../plan/schema.ts'
import { quoteIdent } from './quote.ts'
import type { VectorType } from './catalog/vocabulary.ts'
import { operatorClass, OPERATORS } from './vectorOps.ts'

// What the index is built on and what every query the runner issues orders by: the column
// itself, or its half-precision cast. The two must agree or the planner ignores the index.

export interface SearchExpression {
  /** SQL over the table's columns, e.g. "embedding", ("embedding"::halfvec(1536)) or (binary_quantize("embedding")::bit(1536)). */
  expression: string
  /** The type the index's side of the distance has: vector(1536), halfvec(1536) or bit(1536). */
  castType: string
  opclass: string
  operator: string
  /** The query vector ($1, text form) as the index compares it. */
  query: string
  /**
   * Binary quantization answers approximately: the index returns `factor` times the rows asked
   * for, by Hamming distance, and these are ordered again by the full vector's distance.
   */
  rerank?: { operator: string; castType: string; factor: number }
  /**
   * A predicate the index is partial on and every query must hold: for a column without
   * dimensions, the vectors of the plan's length (the cast of any other would fail, and another
   * length is another model's). Partial, so the application's write of another length never
   * meets the index's cast.
   */
  where?: string
}

export type Precision = 'full' | 'half' | 'binary'

export function searchExpression(
  column: string,
  dimensions: number,
  columnType: VectorType,
  distance: Distance,
  precision: Precision,
  rerankFactor = 10,
  /** The column has no dimensions of its own (vector, not vector(N)): the index and the queries cast it to the plan's. */
  untyped = false,
): SearchExpression {
  const where = untyped ? { where: `vector_dims(${quoteIdent(column)}) = ${dimensions}` } : {}
  if (precision === 'binary') {
    const full = `${columnType}(${dimensions})`
    const bits = `bit(${dimensions})`
    return {
      ...where,
      expression: `(binary_quantize(${quoteIdent(column)}${untyped ? `::${full}` : ''})::${bits})`,
      castType: bits,
      opclass: 'bit_hamming_ops',
      operator: '<~>',
      query: `binary_quantize($1::${full})::${bits}`,
      rerank: { operator: OPERATORS[distance], castType: full, factor: rerankFactor },
    }
  }
  const half = precision === 'half' || columnType === 'halfvec'
  const type: VectorType = half ? 'halfvec' : 'vector'
  const castType = `${type}(${dimensions})`
  const expression = (half && columnType !== 'halfvec') || untyped ? `(${quoteIdent(column)}::${castType})` : quoteIdent(column)
  return { expression, castType, opclass: operatorClass(distance, type), operator: OPERATORS[distance], query: `$1::${castType}`, ...where }
}
