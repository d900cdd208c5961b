// Whether a stored vector is what a model gives for a text: the one test the backfill (before
// adopting vectors of unknown origin) and validate (the column's consistency with the model that
// embeds the queries) both apply. Embeddings of the same text by the same model agree to this
// cosine, deterministic or not (OpenAI's are not to the bit).

export const SAME_MODEL_COSINE = 0.99

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!
    na += a[i]! * a[i]!
    nb += b[i]! * b[i]!
  }
  return dot / (Math.sqrt(na * nb) || 1)
}
