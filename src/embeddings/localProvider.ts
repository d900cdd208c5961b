import type { EmbeddingProvider, EmbedResult } from './provider.ts'
import { loadWordVectors, WORD_DIMENSIONS, type WordVectors } from './wordVectors.ts'

// The offline provider: no key, deterministic, with real semantic signal. A text's vector
// joins two parts, each unit length:
//  - meaning: the SIF-weighted average of its words' GloVe vectors (frequent words weigh
//    little), with the common direction of all words removed;
//  - lexical: hashed word and character-trigram features, so exact names and codes match.
// Output is exactly the target column's dimension and unit length, so cosine, inner product
// and L2 all rank the same.

const SIF_A = 1e-3
/** Zipf's law: a word of rank r has frequency about 1 / (r * H), H ~ ln(341,479) + 0.577. */
const ZIPF_H = Math.log(341_479) + 0.5772
/** Share of the squared norm given to meaning; the rest goes to lexical features. */
const SEMANTIC_SHARE = 0.75

const TOKEN = /[a-z0-9]+(?:'[a-z]+)?/g
/** Texts embedded between two turns of the event loop (about 3 ms of work). */
const YIELD_EVERY = 16

function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

function normalize(values: Float64Array): Float64Array {
  let sum = 0
  for (const v of values) sum += v * v
  const norm = Math.sqrt(sum)
  if (norm > 0) for (let i = 0; i < values.length; i++) values[i]! /= norm
  return values
}

export function semanticVector(tokens: string[], words: WordVectors): Float64Array {
  const out = new Float64Array(WORD_DIMENSIONS)
  for (const token of tokens) {
    const row = words.rowOf(token)
    if (row === undefined) continue
    const frequency = 1 / ((row + 1) * ZIPF_H)
    const weight = SIF_A / (SIF_A + frequency)
    const vector = words.vector(row)
    for (let d = 0; d < WORD_DIMENSIONS; d++) out[d]! += weight * vector[d]!
  }
  let projection = 0
  for (let d = 0; d < WORD_DIMENSIONS; d++) projection += out[d]! * words.common[d]!
  for (let d = 0; d < WORD_DIMENSIONS; d++) out[d]! -= projection * words.common[d]!
  return normalize(out)
}

export function lexicalVector(tokens: string[], buckets: number): Float64Array {
  const out = new Float64Array(buckets)
  const add = (feature: string, weight: number) => {
    const hash = fnv1a(feature)
    out[hash % buckets]! += hash & 0x80000000 ? -weight : weight
  }
  for (const token of tokens) {
    add(`w:${token}`, 1)
    const padded = `#${token}#`
    for (let i = 0; i + 3 <= padded.length; i++) add(`c:${padded.slice(i, i + 3)}`, 0.3)
  }
  return normalize(out)
}

export interface LocalOptions {
  dimensions: number
  /** false gives the purely lexical baseline the relevance benchmark compares against. */
  semantic?: boolean
  words?: WordVectors
}

export function createLocalProvider(options: LocalOptions): EmbeddingProvider & { embedOne(text: string): number[] } {
  const { dimensions } = options
  const semantic = options.semantic !== false
  const words = semantic ? (options.words ?? loadWordVectors()) : undefined
  // Wide targets hold both parts side by side; narrow ones (tests) fold every feature into
  // the available dimensions by signed hashing.
  const sideBySide = semantic && dimensions >= WORD_DIMENSIONS + 64
  const lexicalBuckets = sideBySide ? dimensions - WORD_DIMENSIONS : semantic ? 256 : Math.max(dimensions, 256)

  const embedOne = (text: string): number[] => {
    const tokens = text.toLowerCase().match(TOKEN) ?? []
    const lexical = lexicalVector(tokens, lexicalBuckets)
    const meaning = words ? semanticVector(tokens, words) : new Float64Array(0)
    const lexicalWeight = words ? Math.sqrt(1 - SEMANTIC_SHARE) : 1
    const semanticWeight = Math.sqrt(SEMANTIC_SHARE)
    const out = new Float64Array(dimensions)
    if (sideBySide) {
      for (let d = 0; d < WORD_DIMENSIONS; d++) out[d] = semanticWeight * meaning[d]!
      for (let d = 0; d < lexicalBuckets; d++) out[WORD_DIMENSIONS + d] = lexicalWeight * lexical[d]!
    } else {
      const fold = (values: Float64Array, weight: number, salt: string) =>
        values.forEach((v, i) => {
          if (v === 0) return
          const hash = fnv1a(`${salt}${i}`)
          out[hash % dimensions]! += (hash & 0x80000000 ? -1 : 1) * weight * v
        })
      fold(meaning, semanticWeight, 's')
      fold(lexical, lexicalWeight, 'l')
    }
    normalize(out)
    if (out.every((v) => v === 0)) out[dimensions - 1] = 1 // an empty text still gets a unit vector
    return Array.from(out, (v) => Math.fround(v))
  }

  return {
    name: 'local',
    freeToRepeat: true,
    model: semantic ? 'local-sif-glove100-v1' : 'local-lexical-v1',
    dimensions,
    embedOne,
    async embed(texts): Promise<EmbedResult> {
      const vectors: number[][] = []
      for (const text of texts) {
        vectors.push(embedOne(text))
        // Embedding is this thread's work: every few texts, let its I/O run. Without this the
        // backfill's write in flight (1.5 MB a batch) could not be sent until the whole next
        // batch was embedded, and the two stages ran one after the other.
        if (vectors.length % YIELD_EVERY === 0) await new Promise(setImmediate)
      }
      return { vectors, failures: [] }
    },
    async probe() {},
    estimateCost(texts) {
      const tokens = texts.reduce((sum, t) => sum + (t.toLowerCase().match(TOKEN)?.length ?? 0), 0)
      return { tokens, usd: 0, tokenizer: 'words' }
    },
  }
}
