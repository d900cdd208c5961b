import { getEventListeners } from 'node:events'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createOpenAIProvider, type OpenAIOptions } from '../src/embeddings/openaiProvider.ts'
import { fakeVector, startFakeOpenAI, type FakeOpenAI } from './helpers/fakeOpenAI.ts'

// The real OpenAI SDK against a fake server on loopback that speaks the same protocol.

describe('the openai provider', () => {
  let fake: FakeOpenAI
  beforeEach(async () => {
    fake = await startFakeOpenAI()
  })
  afterEach(async () => fake.close())

  const provider = (options: Partial<OpenAIOptions> = {}) =>
    createOpenAIProvider({
      model: 'text-embedding-ada-002',
      dimensions: 1536,
      apiKey: fake.key,
      baseURL: fake.url,
      baseBackoffMs: 5,
      maxBackoffMs: 50,
      ...options,
    })
  const texts = (n: number, prefix = 'text') => Array.from({ length: n }, (_, i) => `${prefix} number ${i}`)
  const onceEach = (inputs: string[]) => inputs.every((t) => fake.embedded.get(t) === 1)

  it('embeds every input once, in order, within 2,048 inputs a request, through base64 kept as float32 views of one buffer an answer', async () => {
    const inputs = texts(5000)
    const p = provider()
    const { vectors, failures } = await p.embed(inputs)
    expect(failures).toEqual([])
    expect(Array.from(vectors[4321]!)).toEqual(fakeVector(inputs[4321]!, 1536))
    // Not 1,536 doubles a vector on the heap: views sharing their answer's bytes.
    expect(vectors[0]).toBeInstanceOf(Float32Array)
    expect((vectors[0] as Float32Array).buffer).toBe((vectors[1] as Float32Array).buffer)
    expect((vectors[0] as Float32Array).buffer).not.toBe((vectors[2048] as Float32Array).buffer)
    expect(onceEach(inputs)).toBe(true)
    expect(fake.requests.map((r) => r.inputs)).toEqual([2048, 2048, 904])
    expect(fake.requests.every((r) => r.encoding === 'base64')).toBe(true)
  })

  it('leaves no listener on a long-lived signal, however many requests it is given to (a worker runs for months)', async () => {
    const p = provider()
    const stop = new AbortController()
    for (let i = 0; i < 60; i++) await p.embed([`request ${i}`], stop.signal)
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0)
    // And it still stops a request in flight.
    fake.delayMs = 2000
    const inFlight = p.embed(['slow'], stop.signal)
    setTimeout(() => stop.abort(), 50)
    await expect(inFlight).rejects.toThrow()
  })

  it('keeps each request under 300,000 tokens', async () => {
    const long = Array.from({ length: 60 }, (_, i) => `${i} ${'lorem ipsum dolor sit amet '.repeat(1000)}`) // ~6,000 tokens each
    await provider().embed(long)
    expect(fake.requests.length).toBeGreaterThan(1)
    expect(Math.max(...fake.requests.map((r) => r.tokens))).toBeLessThanOrEqual(300_000)
    expect(onceEach(long)).toBe(true)
  })

  it('truncates an input over 8,191 tokens instead of failing the batch', async () => {
    const p = provider()
    const { failures } = await p.embed(['short', 'word '.repeat(9000)])
    expect(failures).toEqual([])
    expect(p.stats.truncated).toBe(1)
  })

  const transient: [string, () => void, number?][] = [
    [
      '429 with retry-after',
      () => fake.faults.push({ type: 'status', status: 429, retryAfter: 0.05 }, { type: 'status', status: 429, retryAfter: 0.05 }),
    ],
    ['500', () => fake.faults.push({ type: 'status', status: 500 }, { type: 'status', status: 503 })],
    ['a dropped connection', () => fake.faults.push({ type: 'drop' })],
    ['a malformed body', () => fake.faults.push({ type: 'malformed' })],
    ['a slow answer past the timeout', () => fake.faults.push({ type: 'slow', ms: 3000 }), 1500],
  ]
  for (const [name, inject, timeoutMs] of transient) {
    it(`retries ${name} and embeds every input exactly once`, async () => {
      inject()
      const inputs = texts(3000)
      const p = provider({ timeoutMs })
      const { failures } = await p.embed(inputs)
      expect(failures).toEqual([])
      expect(onceEach(inputs)).toBe(true)
      expect(p.stats.retries).toBeGreaterThanOrEqual(1)
      expect(p.stats.retries).toBeLessThanOrEqual(2)
    })
  }

  it('honours retry-after: nothing is sent again before it passes', async () => {
    fake.faults.push({ type: 'status', status: 429, retryAfter: 0.4 })
    const started = Date.now()
    await provider({ baseBackoffMs: 1 }).embed(['one'])
    expect(Date.now() - started).toBeGreaterThanOrEqual(380)
  })

  it('splits a batch refused with 400 so that only the bad input fails, with its reason', async () => {
    fake.badInputs.add('poison')
    const inputs = [...texts(9), 'this is poison', ...texts(6, 'more')]
    const p = provider()
    const { vectors, failures } = await p.embed(inputs)
    expect(failures).toEqual([{ index: 9, reason: expect.stringMatching(/^400: .*is not allowed/) }])
    expect(vectors.filter((v) => v !== null)).toHaveLength(15)
    expect(onceEach(inputs.filter((t) => t !== 'this is poison'))).toBe(true)
    expect(p.stats.splits).toBeGreaterThan(0)
  })

  it('stops at once on a rejected key, without retrying', async () => {
    const p = createOpenAIProvider({ model: 'text-embedding-ada-002', dimensions: 1536, apiKey: 'sk-wrong', baseURL: fake.url })
    await expect(p.probe()).rejects.toThrow(/OpenAI rejected the API key \(401\).*check OPENAI_API_KEY/)
    expect(fake.requests).toHaveLength(1)
    expect(fake.embedded.size).toBe(0)
  })

  it('stops on a wrong dimension, naming both numbers', async () => {
    fake.faults.push({ type: 'wrongDims' })
    await expect(provider().probe()).rejects.toThrow('the model text-embedding-ada-002 returned 7 dimensions; 1536 are needed')
  })

  it('sends dimensions for text-embedding-3 models', async () => {
    const { vectors } = await provider({ model: 'text-embedding-3-small', dimensions: 256 }).embed(['x'])
    expect(vectors[0]).toHaveLength(256)
  })

  it('estimates tokens and price with the real tokenizer', () => {
    const estimate = provider().estimateCost(['Simmer the tomato sauce gently for at least twenty minutes.'])
    expect(estimate).toMatchObject({ tokens: 12, tokenizer: 'cl100k_base (exact for OpenAI embedding models)' })
    expect(estimate.usd).toBeCloseTo(12 * 0.1e-6, 12)
  })
})

describe('the backfill with a provider that answers the wrong dimension', () => {
  it('stops before anything is written, naming the column, the model and both numbers', async () => {
    const { createTarget } = await import('./helpers/databases.ts')
    const { runInProcess } = await import('./helpers/runInProcess.ts')
    const { backfillStep } = await import('../src/steps/backfill/backfillStep.ts')
    const { testPlan } = await import('./helpers/plans.ts')
    const fake = await startFakeOpenAI()
    const target = await createTarget('embedded')
    const db = await target.open()
    const saved = { key: process.env.OPENAI_API_KEY, url: process.env.OPENAI_BASE_URL }
    try {
      await db.exec(
        `CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(8)); INSERT INTO docs VALUES (1, 'one', NULL), (2, 'two', NULL)`,
      )
      process.env.OPENAI_API_KEY = fake.key
      process.env.OPENAI_BASE_URL = fake.url
      fake.faults.push({ type: 'wrongDims' })
      const plan = testPlan()
      plan.target.tables = [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
      plan.embedding = { provider: 'openai', model: 'text-embedding-3-small', dimensions: 8 } as any
      plan.batches = [{ id: 'backfill', title: 'Backfill', agent: 'vector-search-engineer', step: 'backfill' } as any]
      // The preflight asks the provider for one embedding before the first change, and refuses.
      await expect(runInProcess(plan, db, new Map([['backfill', backfillStep]]))).rejects.toThrow(
        /nothing was changed:\n {2}embedding\.provider: the openai provider did not answer a one-text embedding request: the model text-embedding-3-small returned 7 dimensions; 8 are needed/,
      )
      expect((await db.query<{ n: number }>('SELECT count(embedding)::int AS n FROM docs')).rows[0]!.n).toBe(0)
      expect((await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'runner'`)).rows).toEqual([]) // not even the runner's schema
    } finally {
      process.env.OPENAI_API_KEY = saved.key ?? ''
      process.env.OPENAI_BASE_URL = saved.url ?? ''
      if (!saved.key) delete process.env.OPENAI_API_KEY
      if (!saved.url) delete process.env.OPENAI_BASE_URL
      await db.close()
      await target.drop()
      await fake.close()
    }
  })
})
