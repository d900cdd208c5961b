import { setTimeout as sleep } from 'node:timers/promises'
import { decode, encode } from 'gpt-tokenizer/encoding/cl100k_base'
import OpenAI from 'openai'
import { ProviderError, UsageError } from '../errors.ts'
import { MAX_TOKENS_PER_INPUT, planRequests } from './planRequests.ts'
import type { EmbeddingFailure, EmbeddingProvider, EmbedResult } from './provider.ts'
import { RateBudget } from './rateBudget.ts'

// Embeddings through the official OpenAI SDK. Requests stay within the API's limits, run
// concurrently up to a limit and share one rate budget; 429, 5xx, timeouts and dropped
// connections are retried with capped, jittered exponential backoff; a 400 splits its batch
// so that only the bad input fails; a rejected key or a wrong dimension stops everything.

/** US dollars per million input tokens. */
const PRICES: Record<string, number> = {
  'text-embedding-ada-002': 0.1,
  'text-embedding-3-small': 0.02,
  'text-embedding-3-large': 0.13,
}

export interface OpenAIOptions {
  model: string
  dimensions: number
  apiKey: string
  baseURL?: string
  concurrency?: number
  maxInputsPerRequest?: number
  requestsPerMinute?: number
  tokensPerMinute?: number
  maxAttempts?: number
  /** First backoff; doubles per attempt up to maxBackoffMs, with full jitter. */
  baseBackoffMs?: number
  maxBackoffMs?: number
  timeoutMs?: number
}

export interface OpenAIStats {
  requests: number
  retries: number
  rateLimited: number
  splits: number
  truncated: number
}

// cl100k_base is the tokenizer of text-embedding-ada-002 and the text-embedding-3 models: counts
// are exact. gpt-tokenizer's tables hold 11 MB of heap where js-tiktoken's held 82 MB, and that
// difference was most of a backfill's memory (bench/backfillMemory.ts).

/**
 * The answer's vectors, asked for as base64 (OpenAI's float32, little-endian), decoded into one
 * buffer per answer and kept as float32 views of it. The SDK's own decoding makes each one an
 * array of 1,536 doubles, and those arrays, outliving the young generation while their batch is
 * saved and written, were most of a backfill's garbage and held its peak above 200 MB.
 */
function decodeVectors(encoded: unknown[], dimensions: number, model: string): Float32Array[] {
  const bytes = 4 * dimensions
  const all = Buffer.allocUnsafe(bytes * encoded.length) // every byte is written below
  return encoded.map((text, i) => {
    if (typeof text !== 'string') throw new SyntaxError(`embedding ${i} of the answer is not base64 (${typeof text})`)
    const length = Buffer.byteLength(text, 'base64')
    if (length !== bytes) throw new ProviderError(`the model ${model} returned ${length / 4} dimensions; ${dimensions} are needed`)
    all.write(text, i * bytes, 'base64')
    return new Float32Array(all.buffer, all.byteOffset + i * bytes, dimensions)
  })
}

function isTransient(error: unknown): boolean {
  if (error instanceof OpenAI.APIConnectionError) return true // includes timeouts and dropped connections
  if (error instanceof OpenAI.APIError) return error.status === 429 || error.status === undefined || error.status >= 500
  return error instanceof SyntaxError || error instanceof TypeError // a malformed body
}

function retryAfterMs(error: unknown): number | undefined {
  if (!(error instanceof OpenAI.APIError) || !error.headers) return undefined
  const ms = Number(error.headers.get('retry-after-ms'))
  if (Number.isFinite(ms) && ms > 0) return ms
  const seconds = Number(error.headers.get('retry-after'))
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined
}

/**
 * A signal for one request, aborted with the caller's and unlinked from it when the request
 * ends. The SDK adds a listener to the signal it is given and never removes it: a worker that
 * gave its one long-lived signal to every request grew by a listener (about 2 KB) a request,
 * some 140 MB an hour at 20 requests a second.
 */
function requestSignal(parent: AbortSignal | undefined): { signal: AbortSignal | undefined; release(): void } {
  if (!parent) return { signal: undefined, release: () => {} }
  const controller = new AbortController()
  const abort = () => controller.abort(parent.reason)
  if (parent.aborted) abort()
  else parent.addEventListener('abort', abort, { once: true })
  return { signal: controller.signal, release: () => parent.removeEventListener('abort', abort) }
}

export function createOpenAIProvider(options: OpenAIOptions): EmbeddingProvider & { stats: OpenAIStats } {
  const client = new OpenAI({ apiKey: options.apiKey, baseURL: options.baseURL, maxRetries: 0, timeout: options.timeoutMs ?? 60_000 })
  const budget = new RateBudget({ requestsPerMinute: options.requestsPerMinute, tokensPerMinute: options.tokensPerMinute })
  const stats: OpenAIStats = { requests: 0, retries: 0, rateLimited: 0, splits: 0, truncated: 0 }
  const maxAttempts = options.maxAttempts ?? 8
  const takesDimensions = options.model.startsWith('text-embedding-3')

  async function request(inputs: string[], tokens: number, signal?: AbortSignal): Promise<Float32Array[]> {
    for (let attempt = 1; ; attempt++) {
      await budget.acquire(tokens, signal)
      stats.requests++
      const linked = requestSignal(signal)
      try {
        const { data, response } = await client.embeddings
          .create(
            {
              model: options.model,
              input: inputs,
              encoding_format: 'base64',
              ...(takesDimensions ? { dimensions: options.dimensions } : {}),
            },
            { signal: linked.signal },
          )
          .withResponse()
          .finally(linked.release)
        budget.update(response.headers)
        if (!Array.isArray(data.data) || data.data.length !== inputs.length)
          throw new SyntaxError(`the answer has ${data.data?.length} embeddings for ${inputs.length} inputs`)
        return decodeVectors(
          [...data.data].sort((a, b) => a.index - b.index).map((d) => d.embedding as unknown),
          options.dimensions,
          options.model,
        )
      } catch (error) {
        if (error instanceof ProviderError || signal?.aborted) throw error
        if (error instanceof OpenAI.AuthenticationError || error instanceof OpenAI.PermissionDeniedError) {
          throw new ProviderError(`OpenAI rejected the API key (${error.status}): ${error.message}; check OPENAI_API_KEY`)
        }
        if (error instanceof OpenAI.NotFoundError)
          throw new ProviderError(`OpenAI does not know the model ${options.model} (404): ${error.message}`)
        if (!isTransient(error) || attempt >= maxAttempts) throw error
        stats.retries++
        const told = retryAfterMs(error)
        if (error instanceof OpenAI.RateLimitError) stats.rateLimited++
        const backoff = Math.random() * Math.min(options.maxBackoffMs ?? 30_000, (options.baseBackoffMs ?? 500) * 2 ** (attempt - 1))
        if (told) budget.pause(told)
        await sleep(told ?? backoff, undefined, { signal })
      }
    }
  }

  /** Embeds one batch; on a 400 splits it in halves until only the bad inputs fail. */
  async function embedBatch(indices: number[], texts: string[], counts: number[], out: EmbedResult, signal?: AbortSignal): Promise<void> {
    const tokens = indices.reduce((s, i) => s + counts[i]!, 0)
    try {
      const vectors = await request(
        indices.map((i) => texts[i]!),
        tokens,
        signal,
      )
      indices.forEach((i, j) => {
        out.vectors[i] = vectors[j]!
      })
    } catch (error) {
      if (error instanceof ProviderError) throw error
      if (error instanceof OpenAI.BadRequestError && indices.length > 1) {
        stats.splits++
        const half = Math.ceil(indices.length / 2)
        await embedBatch(indices.slice(0, half), texts, counts, out, signal)
        await embedBatch(indices.slice(half), texts, counts, out, signal)
        return
      }
      if (signal?.aborted) throw error
      const reason = error instanceof OpenAI.APIError ? `${error.status ?? 'connection'}: ${error.message}` : (error as Error).message
      out.failures.push(...indices.map((index): EmbeddingFailure => ({ index, reason })))
    }
  }

  const provider = {
    name: 'openai' as const,
    freeToRepeat: false,
    model: options.model,
    dimensions: options.dimensions,
    stats,

    async embed(inputs: string[], signal?: AbortSignal): Promise<EmbedResult> {
      const texts: string[] = []
      const counts: number[] = []
      for (const input of inputs) {
        // An empty input is a 400 from the API; one space embeds as "nothing" and keeps the row.
        let text = input.trim() === '' ? ' ' : input
        let tokens = encode(text)
        if (tokens.length > MAX_TOKENS_PER_INPUT) {
          stats.truncated++
          tokens = tokens.slice(0, MAX_TOKENS_PER_INPUT)
          text = decode(tokens)
        }
        texts.push(text)
        counts.push(tokens.length)
      }
      const out: EmbedResult = { vectors: inputs.map(() => null), failures: [] }
      const queue = planRequests(counts, options.maxInputsPerRequest)
      const workers = Array.from({ length: Math.min(options.concurrency ?? 4, queue.length) }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await embedBatch(next, texts, counts, out, signal)
      })
      await Promise.all(workers)
      out.failures.sort((a, b) => a.index - b.index)
      return out
    },

    async probe() {
      const result = await provider.embed(['runner probe'])
      if (result.failures.length) throw new ProviderError(`the embedding probe failed: ${result.failures[0]!.reason}`)
    },

    estimateCost(inputs: string[]) {
      const tokens = inputs.reduce((s, t) => s + Math.min(MAX_TOKENS_PER_INPUT, encode(t).length), 0)
      const price = PRICES[options.model]
      return {
        tokens,
        usd: price === undefined ? Number.NaN : (tokens / 1e6) * price,
        tokenizer: 'cl100k_base (exact for OpenAI embedding models)',
      }
    },
  }
  return provider
}

export function requireOpenAIKey(env: NodeJS.ProcessEnv = process.env): string {
  const key = env.OPENAI_API_KEY
  if (!key)
    throw new UsageError(
      'the plan uses the openai embedding provider but OPENAI_API_KEY is not set (put it in the environment or a .env file)',
    )
  return key
}
