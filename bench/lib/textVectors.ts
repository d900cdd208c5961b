import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { random } from '../../src/demo/generateDemo.ts'
import { createLocalProvider } from '../../src/embeddings/localProvider.ts'
import { loadWordVectors, WORD_DIMENSIONS, type WordVectors } from '../../src/embeddings/wordVectors.ts'
import { encodeCopyBinary } from './copyBinary.ts'

// Benchmark vectors like a model's: generated texts, embedded by the local provider (GloVe word
// vectors, SIF-weighted, beside hashed lexical features), so that the vectors carry the
// structure text embeddings have, not the 40 clusters of near-copies bench/lib/benchDatabase.ts
// draws (kept as the stress case). Each text is about a few subjects: a subject is a word and
// its nearest neighbours in the word space; a text draws its words from one main subject, now
// and then a second, and the language's common words by their frequency (Zipf). Deterministic
// for a seed; queries are drawn by the same generator and are not rows of the table.

const SUBJECTS = 2000
const NEIGHBOURS = 40
/** Subjects are anchored among these words (past the function words) and their neighbours found among the top VOCABULARY. */
const ANCHORS_FROM = 300
const ANCHORS_TO = 20_000
const VOCABULARY = 50_000
const COPY_ROWS = 4000

/** Each subject's words: an anchor and its nearest neighbours by cosine among the common words. */
function subjects(words: WordVectors, next: () => number): number[][] {
  const out: number[][] = []
  for (let s = 0; s < SUBJECTS; s++) {
    const anchor = ANCHORS_FROM + Math.floor(next() * (ANCHORS_TO - ANCHORS_FROM))
    const a = words.vector(anchor)
    const scored: [number, number][] = []
    for (let row = ANCHORS_FROM; row < VOCABULARY; row++) {
      const v = words.vector(row)
      let dot = 0
      for (let d = 0; d < WORD_DIMENSIONS; d++) dot += a[d]! * v[d]!
      if (scored.length < NEIGHBOURS || dot > scored.at(-1)![0]) {
        scored.push([dot, row])
        scored.sort((x, y) => y[0] - x[0])
        if (scored.length > NEIGHBOURS) scored.pop()
      }
    }
    out.push(scored.map(([, row]) => row))
  }
  return out
}

export interface TextGenerator {
  text(): string
}

export function textGenerator(seed = 1): TextGenerator {
  const words = loadWordVectors()
  const next = random(seed)
  const about = subjects(words, next)
  // Zipf over the common words: rank r with probability ~ 1/r, drawn by inverting the harmonic sum.
  const zipf = () => Math.min(VOCABULARY - 1, Math.floor(Math.exp(next() * Math.log(VOCABULARY))) - 1)
  return {
    text() {
      const main = about[Math.floor(next() * SUBJECTS)]!
      const second = about[Math.floor(next() * SUBJECTS)]!
      const length = 10 + Math.floor(next() * 20)
      const out: string[] = []
      for (let i = 0; i < length; i++) {
        const r = next()
        const row =
          r < 0.45 ? main[Math.floor(next() * NEIGHBOURS)]! : r < 0.55 ? second[Math.floor(next() * NEIGHBOURS)]! : Math.max(0, zipf())
        out.push(words.word(row))
      }
      return out.join(' ')
    },
  }
}

/**
 * `items (id, body, embedding)` of `rows` generated texts and their local-provider vectors, and
 * `bench_queries (q, body, v)` of `queries` more; reused when both already have those sizes.
 */
export async function ensureTextVectors(url: string, rows: number, queries: number, log: (m: string) => void): Promise<void> {
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS vector')
    const has = await db.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('items', 'bench_queries')`)
    if (has.rows[0].n === 2) {
      const n = await db.query('SELECT (SELECT count(embedding) FROM items)::int AS i, (SELECT count(*) FROM bench_queries)::int AS q')
      if (n.rows[0].i === rows && n.rows[0].q >= queries) return
    }
    log(`generating ${rows.toLocaleString('en-US')} texts and their vectors (local provider, 1536 dimensions) ...`)
    const started = Date.now()
    const generate = textGenerator(1)
    const provider = createLocalProvider({ dimensions: 1536 })
    await db.query('DROP TABLE IF EXISTS items, bench_queries')
    await db.query('CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL, embedding vector(1536))')
    await db.query('CREATE TABLE bench_queries (q int PRIMARY KEY, body text NOT NULL, v vector(1536) NOT NULL)')
    for (let from = 1; from <= rows; from += COPY_ROWS) {
      const chunk = []
      for (let i = from; i < Math.min(from + COPY_ROWS, rows + 1); i++) {
        const body = generate.text()
        chunk.push([BigInt(i), body, provider.embedOne(body)])
      }
      await pipeline(Readable.from([encodeCopyBinary(chunk)]), db.query(copyFrom('COPY items FROM STDIN WITH (FORMAT binary)')))
      if ((from - 1) % (COPY_ROWS * 25) === 0) log(`  ${(from - 1).toLocaleString('en-US')} rows`)
    }
    for (let q = 1; q <= queries; q++) {
      const body = generate.text()
      await db.query('INSERT INTO bench_queries VALUES ($1, $2, $3)', [q, body, `[${provider.embedOne(body).join(',')}]`])
    }
    await db.query('VACUUM ANALYZE items')
    log(`  generated in ${((Date.now() - started) / 1000).toFixed(0)} s`)
  } finally {
    await db.end()
  }
}
