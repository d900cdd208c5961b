import { z } from 'zod'
import type { Database } from '../../db/database.ts'
import type { SearchExpression } from '../../db/searchExpression.ts'
import type { Target } from '../../db/target.ts'
import type { EmbeddingProvider } from '../../embeddings/provider.ts'
import { cosine, SAME_MODEL_COSINE } from '../../embeddings/sameModel.ts'
import { runAt, type SearchQuery, type SearchSetting } from './measureSearch.ts'

// Relevance with what every application has, when nobody labelled queries: known-item
// retrieval (a row searched by a part of its own text must come back in the top k, the way a
// user half-remembers what they are looking for), and a check that the model embedding queries
// now is the model that wrote the column (a sample of rows embedded again lands on the vectors
// stored for them: with another model's vectors in the column, every query lands elsewhere).

/** Rows searched for, and rows embedded again for the consistency check. */
export const KNOWN_ITEMS = 30

export const knownItemsSchema = z.object({
  queries: z.number().int(),
  k: z.number().int(),
  /** Share of rows that came back in the top k when searched by the first half of their own text. */
  recall_at_k: z.number(),
  consistency: z.object({
    sampled: z.number().int(),
    /** Stored vectors at or above SAME_MODEL_COSINE from what the model gives for their text now. */
    matched: z.number().int(),
    min_cosine: z.number(),
  }),
})
export type KnownItems = z.infer<typeof knownItemsSchema>

/** The first half of a text's words (at least three): what a user remembers of it. */
export function partOf(text: string): string {
  const words = text.trim().split(/\s+/)
  return words.slice(0, Math.max(3, Math.ceil(words.length / 2))).join(' ')
}

export async function measureKnownItems(
  db: Database,
  t: Target,
  provider: EmbeddingProvider,
  search: SearchExpression,
  setting: SearchSetting,
  k: number,
): Promise<KnownItems | null> {
  const sample = await t.sampleEmbeddedTexts(db, KNOWN_ITEMS)
  if (sample.length === 0) return null
  const fresh = await provider.embed(sample.map((r) => r.text))
  const cosines = sample.map((r, i) => (fresh.vectors[i] ? cosine(JSON.parse(r.vector) as number[], fresh.vectors[i]!) : 0))
  const parts = await provider.embed(sample.map((r) => partOf(r.text)))
  const limit = Math.max(10, k)
  const query: SearchQuery = { name: 'known items', sql: t.nearestSql(search), params: (vector) => [vector, limit], limit }
  let found = 0
  for (const [i, item] of sample.entries()) {
    const vector = parts.vectors[i]
    if (!vector) continue
    const run = await runAt(db, t.table, query, [`[${vector.join(',')}]`], setting)
    const top = (run.ids[0] ?? []).slice(0, k).map(String)
    // A row with the very same text is the same item to whoever searches for it.
    const same = top.includes(item.key) || (await t.readTexts(db, top)).some((r) => r.hash === item.hash)
    if (same) found++
  }
  return {
    queries: sample.length,
    k,
    recall_at_k: found / sample.length,
    consistency: {
      sampled: sample.length,
      matched: cosines.filter((c) => c >= SAME_MODEL_COSINE).length,
      min_cosine: Math.min(...cosines),
    },
  }
}
