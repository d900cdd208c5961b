import type { Queryable } from '../db/database.ts'
import type { VectorType } from '../db/vectorOps.ts'
import type { Plan, TargetTable } from '../plan/schema.ts'
import { targetSql, type TargetSql } from './targetSql.ts'

export interface ResolvedTarget extends TargetSql {
  plan: TargetTable
  /** The key column's SQL type, so lookups by key use its index: bigint, uuid, text... */
  keyType: string
  /** The embedding column's type with dimensions: vector(1536). */
  embeddingType: string
  vectorType: VectorType
  dimensions: number
}

/** Reads the key and embedding column types of every target table from the catalog. */
export async function resolveTargets(db: Queryable, plan: Plan): Promise<ResolvedTarget[]> {
  const resolved: ResolvedTarget[] = []
  for (const t of plan.target.tables) {
    const { rows } = await db.query<{ attname: string; type: string; typmod: number }>(
      `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.atttypmod AS typmod
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = ANY($3::text[])`,
      [t.schema, t.table, [t.key, t.embedding_column]],
    )
    const key = rows.find((r) => r.attname === t.key)
    const embedding = rows.find((r) => r.attname === t.embedding_column)
    if (!key || !embedding) throw new Error(`${t.schema}.${t.table}: key ${t.key} or embedding column ${t.embedding_column} not found`)
    if (!/^(vector|halfvec)\(\d+\)$/.test(embedding.type))
      throw new Error(`${t.schema}.${t.table}.${t.embedding_column} is ${embedding.type}, not vector(N) or halfvec(N)`)
    resolved.push({
      ...targetSql(t),
      plan: t,
      keyType: key.type,
      embeddingType: embedding.type,
      vectorType: embedding.type.startsWith('halfvec') ? 'halfvec' : 'vector',
      dimensions: embedding.typmod,
    })
  }
  return resolved
}
