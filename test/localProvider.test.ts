import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { createLocalProvider } from '../src/embeddings/localProvider.ts'
import { rankingMetrics } from '../src/embeddings/rankingMetrics.ts'
import { demoLabels, generateDemo } from '../src/demo/generateDemo.ts'
import { defaultCachePath, readPackage } from '../src/embeddings/wordVectors.ts'
import { tempDir } from './helpers/databases.ts'

const cosine = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i]!, 0)
const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a))

describe('the local embedding provider', () => {
  const local = createLocalProvider({ dimensions: 1536 })

  it('gives unit vectors of exactly the requested dimension, deterministically', async () => {
    const { vectors, failures } = await local.embed(['Simmer the tomato sauce.', '', 'x'])
    expect(failures).toEqual([])
    for (const v of vectors) {
      expect(v).toHaveLength(1536)
      expect(norm(v!)).toBeCloseTo(1, 5)
    }
    expect(createLocalProvider({ dimensions: 1536 }).embedOne('Simmer the tomato sauce.')).toEqual(vectors[0])
    const small = createLocalProvider({ dimensions: 8 }).embedOne('Simmer the tomato sauce.')
    expect(small).toHaveLength(8)
    expect(norm(small)).toBeCloseTo(1, 5)
  })

  it('lets the event loop run while it embeds a batch, so a write in flight is not held until it ends', async () => {
    const atoms = generateDemo(300).atoms
    const texts = Array.from({ length: 256 }, (_, i) => `${atoms[i % atoms.length]!.title} ${atoms[i % atoms.length]!.content} ${i}`)
    let turns = 0
    const counting = setInterval(() => turns++, 0)
    const { vectors } = await local.embed(texts)
    clearInterval(counting)
    expect(vectors).toHaveLength(256)
    // 256 texts take tens of milliseconds; a timer due every millisecond ran between them.
    expect(turns).toBeGreaterThan(2)
  })

  it('puts a paraphrase with no shared words nearer than an unrelated sentence', () => {
    const query = local.embedOne('how long do I cook marinara until it gets thick')
    const paraphrase = local.embedOne('Simmer the tomato sauce gently for at least twenty minutes.')
    const unrelated = local.embedOne('A missing index forces PostgreSQL into a sequential scan of the whole table.')
    expect(cosine(query, paraphrase)).toBeGreaterThan(cosine(query, unrelated) + 0.2)
  })

  it('beats the lexical baseline on the labelled demo queries', () => {
    const demo = generateDemo(1000)
    const labels = demoLabels(demo).filter((l) => l.table === 'atoms')
    const score = (provider: ReturnType<typeof createLocalProvider>) => {
      const docs = demo.atoms.map((a) => ({ id: a.id, v: provider.embedOne(`${a.title} ${a.content}`) }))
      return rankingMetrics(
        labels.map((l) => {
          const q = provider.embedOne(l.query)
          return { ranked: [...docs].sort((a, b) => cosine(b.v, q) - cosine(a.v, q)).map((d) => d.id), relevant: new Set(l.relevant_ids) }
        }),
        5,
      )
    }
    const semantic = score(local)
    const lexical = score(createLocalProvider({ dimensions: 1536, semantic: false }))
    expect(semantic.recallAtK).toBeGreaterThan(lexical.recallAtK + 0.15)
    expect(semantic.mrr).toBeGreaterThan(lexical.mrr)
  })

  it('starts from its binary cache in well under a second in a new process', async () => {
    expect(existsSync(defaultCachePath())).toBe(true)
    const script = `import { createLocalProvider } from './src/embeddings/localProvider.ts'
      const t = performance.now(); createLocalProvider({ dimensions: 1536 }).embedOne('hello world'); console.log(performance.now() - t)`
    const { stdout } = await execa('node', ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '..'),
    })
    expect(Number(stdout)).toBeLessThan(1000)
  })

  it('rebuilds a missing cache from the package', async () => {
    const path = join(import.meta.dirname, '../.runner/test-cache/words.bin')
    rmSync(path, { force: true })
    const script = `import { loadWordVectors } from './src/embeddings/wordVectors.ts'
      const w = loadWordVectors(${JSON.stringify(path)}); console.log(w.size, w.rowOf('the'), w.rowOf('marinara') !== undefined)`
    const { stdout } = await execa('node', ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '..'),
    })
    expect(stdout.trim()).toBe('150000 0 true')
    expect(existsSync(path)).toBe(true)
  }, 120_000)
})

describe('the word-vector package, read forward in chunks', () => {
  /** A file in the package's shape: metadata, the words, then each word's [values, norm, index] in the words' order. */
  function packageFile(words: string[], order = words.map((_, i) => i)) {
    const vectors = order.map(
      (i) => `${JSON.stringify(words[i])}:[${[...Array(100)].map((_, d) => ((i * 7 + d * 13) % 97) / 97 - 0.5).join(',')},1.5,${i}]`,
    )
    const path = join(tempDir(), 'vectors.json')
    writeFileSync(path, `{"precision":8,"words":${JSON.stringify(words)},"vectors":{${vectors.join(',\n')}},"unkVector":[0,-1]}`)
    return path
  }
  const words = ['the', ',', '"', 'back\\slash', 'café', ']', 'end', ...[...Array(300)].map((_, i) => `w${i}`)]

  it('gives every word and vector JSON.parse gives, whatever the chunk size, and stops when told', () => {
    const path = packageFile(words)
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { vectors: Record<string, number[]> }
    for (const chunk of [7, 64, 4096, 1 << 20]) {
      const seen: [string, number[]][] = []
      readPackage(path, (word, raw) => seen.push([word, raw]) > 0, chunk)
      expect(seen.map(([w]) => w)).toEqual(words)
      for (const [word, raw] of seen) expect(raw).toEqual(parsed.vectors[word])
    }
    const first: string[] = []
    readPackage(path, (word) => first.push(word) < 3, 64)
    expect(first).toEqual(['the', ',', '"'])
  })

  it('refuses a file whose vectors are not in the order of its words, instead of misreading it', () => {
    const path = packageFile(words.slice(0, 4), [0, 2, 1, 3])
    expect(() => readPackage(path, () => true, 64)).toThrow(
      `the vector of "\\"" is at word index 2, expected 1: not the layout this runner reads`,
    )
  })
})
