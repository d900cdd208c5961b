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
}

export type Precision = 'full' | 'half' | 'binary'

export function searchExpression(
  column: string,
  dimensions: number,
  columnType: VectorType,
  distance: Distance,
  precision: Precision,
  rerankFactor = 10,
): SearchExpression {
  if (precision === 'binary') {
    const full = `${columnType}(${dimensions})`
    const bits = `bit(${dimensions})`
    return {
      expression: `(binary_quantize(${quoteIdent(column)})::${bits})`,
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
  const expression = half && columnType !== 'halfvec' ? `(${quoteIdent(column)}::${castType})` : quoteIdent(column)
  return { expression, castType, opclass: operatorClass(distance, type), operator: OPERATORS[distance], query: `$1::${castType}` }
}
