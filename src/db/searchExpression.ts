import type { Distance } from '../plan/schema.ts'
import { quoteIdent } from './quote.ts'
import type { VectorType } from './catalog/vocabulary.ts'
import { operatorClass, OPERATORS } from './vectorOps.ts'

// What the index is built on and what every query the runner issues orders by: the column
// itself, or its half-precision cast. The two must agree or the planner ignores the index.

export interface SearchExpression {
  /** SQL over the table's columns, e.g. "embedding" or ("embedding"::halfvec(1536)). */
  expression: string
  /** The type a query vector is cast to: vector(1536) or halfvec(1536). */
  castType: string
  opclass: string
  operator: string
}

export function searchExpression(
  column: string,
  dimensions: number,
  columnType: VectorType,
  distance: Distance,
  precision: 'full' | 'half',
): SearchExpression {
  const half = precision === 'half' || columnType === 'halfvec'
  const type: VectorType = half ? 'halfvec' : 'vector'
  const castType = `${type}(${dimensions})`
  const expression = half && columnType !== 'halfvec' ? `(${quoteIdent(column)}::${castType})` : quoteIdent(column)
  return { expression, castType, opclass: operatorClass(distance, type), operator: OPERATORS[distance] }
}
