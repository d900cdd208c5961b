import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getEncoding } from 'js-tiktoken'

// An OpenAI-compatible embeddings server on loopback for tests: the real /v1/embeddings
// protocol (base64 or float encoding, usage, x-ratelimit-* headers, error bodies), and
// faults to inject. It counts what it embedded, so tests can check each input once.

export type Fault =
  | { type: 'status'; status: number; retryAfter?: number }
  | { type: 'slow'; ms: number }
  | { type: 'drop' }
  | { type: 'wrongDims' }
  | { type: 'malformed' }

export interface FakeOpenAI {
  url: string
  key: string
  /** Faults applied to the next requests, one per request, in order. */
  faults: Fault[]
  /** A request whose inputs contain any of these strings gets a 400. */
  badInputs: Set<string>
  /** A request whose inputs contain any of these strings is never answered (until the client goes). */
  hangInputs: Set<string>
  /** Successful embeddings per input text. */
  embedded: Map<string, number>
  requests: { inputs: number; tokens: number; encoding: string | undefined; status: number }[]
  /** Enforced tokens per minute (429 beyond), and advertised in the headers. */
  tokensPerMinute?: number
  /** Requests received so far, counted on arrival (requests counts them when answered). */
  arrived: number
  /** When each request arrived (epoch ms), in order. */
  arrivals: number[]
  /** Added to every answer, to make timing windows in tests wide enough. */
  delayMs: number
  /** Requests being answered right now, and the most there ever were at once. */
  inFlight: number
  maxInFlight: number
  close(): Promise<void>
}

const encoder = getEncoding('cl100k_base')

export function fakeVector(text: string, dimensions: number): number[] {
  const seed = createHash('sha256').update(text).digest()
  const values = Array.from({ length: dimensions }, (_, i) => (seed[i % 32]! - 128) / 128 + Math.sin(i + seed[0]!))
  const norm = Math.hypot(...values)
  return values.map((v) => Math.fround(v / norm))
}

export async function startFakeOpenAI(options: { tokensPerMinute?: number } = {}): Promise<FakeOpenAI> {
  const fake: Omit<FakeOpenAI, 'url' | 'close'> = {
    key: 'sk-test-fake-key-0123456789',
    faults: [],
    badInputs: new Set(),
    hangInputs: new Set(),
    inFlight: 0,
    maxInFlight: 0,
    embedded: new Map(),
    requests: [],
    tokensPerMinute: options.tokensPerMinute,
    arrived: 0,
    arrivals: [],
    delayMs: 0,
  }
  // The tokens-per-minute limit as a bucket refilled continuously, as OpenAI describes its limits.
  let bucket = options.tokensPerMinute ?? 0
  let refilledAt = Date.now()

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(typeof body === 'string' ? body : JSON.stringify(body))
  }
  const error = (message: string, type: string, code: string | null = null) => ({ error: { message, type, param: null, code } })

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    fake.arrived++
    fake.arrivals.push(Date.now())
    fake.inFlight++
    fake.maxInFlight = Math.max(fake.maxInFlight, fake.inFlight)
    res.once('close', () => fake.inFlight--)
    if (fake.delayMs) await new Promise((r) => setTimeout(r, fake.delayMs))
    if (req.method !== 'POST' || !req.url?.endsWith('/embeddings')) return send(res, 404, error('not found', 'invalid_request_error'))
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      model: string
      input: string | string[]
      encoding_format?: string
      dimensions?: number
    }
    const inputs = Array.isArray(body.input) ? body.input : [body.input]
    const tokens = inputs.reduce((s, t) => s + encoder.encode(t).length, 0)
    const record = (status: number) => fake.requests.push({ inputs: inputs.length, tokens, encoding: body.encoding_format, status })

    if (req.headers.authorization !== `Bearer ${fake.key}`) {
      record(401)
      return send(res, 401, error('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'))
    }
    if (inputs.some((t) => [...fake.hangInputs].some((h) => t.includes(h)))) {
      await new Promise((resolve) => req.socket.once('close', resolve))
      return record(0)
    }
    const fault = fake.faults.shift()
    if (fault?.type === 'drop') {
      record(0)
      return req.socket.destroy()
    }
    if (fault?.type === 'slow') {
      await new Promise((r) => setTimeout(r, fault.ms))
      // The client gave up meanwhile: whatever is computed now is never delivered.
      if (res.destroyed || req.socket.destroyed) return record(0)
    }
    if (fault?.type === 'status') {
      record(fault.status)
      return send(
        res,
        fault.status,
        error(`injected ${fault.status}`, fault.status === 429 ? 'rate_limit_exceeded' : 'server_error'),
        fault.retryAfter ? { 'retry-after': String(fault.retryAfter) } : {},
      )
    }
    if (inputs.length > 2048 || tokens > 300_000 || inputs.some((t) => encoder.encode(t).length > 8191) || inputs.some((t) => t === '')) {
      record(400)
      return send(res, 400, error('request exceeds the limits of the embeddings endpoint', 'invalid_request_error'))
    }
    const bad = inputs.find((t) => [...fake.badInputs].some((b) => t.includes(b)))
    if (bad !== undefined) {
      record(400)
      return send(res, 400, error(`input ${JSON.stringify(bad.slice(0, 20))} is not allowed`, 'invalid_request_error'))
    }
    const headers: Record<string, string> = {}
    const limit = fake.tokensPerMinute
    if (limit) {
      const now = Date.now()
      bucket = Math.min(limit, bucket + ((now - refilledAt) / 60_000) * limit)
      refilledAt = now
      if (tokens > bucket) {
        record(429)
        const waitMs = Math.ceil(((tokens - bucket) / limit) * 60_000)
        return send(res, 429, error('Rate limit reached for tokens per min', 'tokens', 'rate_limit_exceeded'), {
          'retry-after-ms': String(waitMs),
        })
      }
      bucket -= tokens
      Object.assign(headers, {
        'x-ratelimit-limit-tokens': String(limit),
        'x-ratelimit-remaining-tokens': String(Math.floor(bucket)),
        'x-ratelimit-reset-tokens': `${Math.ceil(((limit - bucket) / limit) * 60)}s`,
      })
    }
    const dimensions = fault?.type === 'wrongDims' ? 7 : (body.dimensions ?? 1536)
    if (fault?.type === 'malformed') {
      record(200)
      return send(res, 200, '{"object": "list", "data": [', headers)
    }
    record(200)
    for (const t of inputs) fake.embedded.set(t, (fake.embedded.get(t) ?? 0) + 1)
    const data = inputs.map((t, index) => {
      const vector = fakeVector(t, dimensions)
      const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector
      return { object: 'embedding', index, embedding }
    })
    send(res, 200, { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }, headers)
  }

  const server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return Object.assign(fake, {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  })
}
