import type { Database, Queryable } from '../db/database.ts'
import type { Target } from '../db/target.ts'

// The plan's "what NOT to do" as code. A read_only batch gets a database handle whose every
// statement runs in one READ ONLY transaction, so PostgreSQL itself refuses a write. A batch
// that may not write embeddings has the embedding columns counted before and after.

export function readOnlyView(tx: Queryable, base: Database): Database {
  return {
    kind: base.kind,
    description: base.description,
    fingerprint: base.fingerprint,
    query: (sql, params) => tx.query(sql, params),
    exec: (sql) => tx.exec(sql),
    transaction: (work) => work(tx),
    withSession: (work) => work(tx),
    vectorArray: (vectors) => base.vectorArray(vectors),
    listen: () => Promise.reject(new Error('a read_only batch cannot LISTEN')),
    close: () => Promise.resolve(),
  }
}

export type EmbeddingCounts = Record<string, number>

export async function countEmbeddings(db: Queryable, targets: Target[]): Promise<EmbeddingCounts> {
  const counts: EmbeddingCounts = {}
  for (const t of targets) {
    const { rows, nulls } = await t.counts(db)
    counts[`${t.name}.${t.plan.embedding_column}`] = rows - nulls
  }
  return counts
}

/** Describes every column whose count of embeddings changed, or returns undefined. */
export function embeddingChanges(before: EmbeddingCounts, after: EmbeddingCounts): string | undefined {
  const changed = Object.keys(before).filter((k) => before[k] !== after[k])
  if (changed.length === 0) return undefined
  return changed.map((k) => `${k}: ${before[k]} -> ${after[k]} embeddings`).join('; ')
}
