import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { z } from 'zod'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import { errorMessage } from '../errors.ts'
import type { Log } from '../log/log.ts'

// The worker as a service: GET /healthz answers 200 while the worker reaches its database
// and listens for NOTIFY, 503 otherwise (so a supervisor restarts or alerts on it); GET
// /metrics serves the Prometheus text format, every name prefixed runner_. POST /embed (also
// at /v1/embeddings, so an OpenAI client pointed here works unchanged) embeds the
// application's query texts with the worker's own provider and model: the same space as the
// column, which with the local provider nothing else can give the application.

export interface WorkerMonitor {
  /** The last database round trip succeeded. */
  databaseOk: boolean
  /** The LISTEN connection is up. */
  listening(): boolean
  embedded: number
  failed: number
  /** Embedding calls and the seconds they took, and the provider's retries. */
  providerCalls: number
  providerSeconds: number
  providerRetries(): number
  /** The queue as last read; undefined before the first read. */
  queue?: { pending: number; oldestSeconds: number | null }
  /** Reads the queue again (on each scrape); failures keep the last reading. */
  refresh?(): Promise<void>
  /** The worker's provider, once created: what POST /embed embeds with. */
  embedder?: Pick<EmbeddingProvider, 'name' | 'model' | 'dimensions' | 'embed'>
}

/** What POST /embed takes: OpenAI's request shape, so an OpenAI client pointed at the worker works. */
const embedRequestSchema = z.object({
  input: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2048)]),
  model: z.string().optional(),
})
const MAX_BODY_BYTES = 1_000_000

export function newMonitor(): WorkerMonitor {
  return {
    databaseOk: true,
    listening: () => false,
    embedded: 0,
    failed: 0,
    providerCalls: 0,
    providerSeconds: 0,
    providerRetries: () => 0,
  }
}

export function renderMetrics(m: WorkerMonitor): string {
  const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number) =>
    `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`
  return [
    metric('runner_worker_up', 'gauge', '1 while the worker reaches its database and listens', healthy(m) ? 1 : 0),
    metric('runner_queue_depth', 'gauge', 'rows waiting in the embedding queue (as last read)', m.queue?.pending ?? 0),
    metric('runner_queue_oldest_pending_seconds', 'gauge', 'age of the oldest queued row (as last read)', m.queue?.oldestSeconds ?? 0),
    metric('runner_embedded_total', 'counter', 'embeddings this worker wrote', m.embedded),
    metric('runner_failed_total', 'counter', 'rows this worker moved to the failed jobs', m.failed),
    metric('runner_provider_calls_total', 'counter', 'embedding calls to the provider', m.providerCalls),
    metric('runner_provider_seconds_total', 'counter', 'seconds spent in embedding calls', m.providerSeconds),
    metric('runner_provider_retries_total', 'counter', "the provider's retries (429, 5xx, timeouts)", m.providerRetries()),
  ].join('')
}

/** Answers POST /embed; every refusal is a JSON error naming what was wrong, in OpenAI's error shape. */
async function embed(req: IncomingMessage, monitor: WorkerMonitor): Promise<{ status: number; body: unknown }> {
  const error = (status: number, message: string) => ({ status, body: { error: { message, type: 'invalid_request_error' } } })
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) return error(413, `the request body is over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  const embedder = monitor.embedder
  if (!embedder) return error(503, 'the worker has not started its provider yet (it waits for the pipeline to be installed)')
  let parsed: z.infer<typeof embedRequestSchema>
  try {
    const request = embedRequestSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')))
    if (!request.success)
      return error(400, `expected {"input": "text"} or {"input": ["text", ...]} (at most 2048 texts): ${request.error.issues[0]?.message}`)
    parsed = request.data
  } catch {
    return error(400, 'the request body is not JSON')
  }
  if (parsed.model !== undefined && parsed.model !== embedder.model)
    return error(400, `this worker embeds with ${embedder.model}, the model of the column; asked for ${parsed.model}`)
  const texts = typeof parsed.input === 'string' ? [parsed.input] : parsed.input
  try {
    const { vectors } = await embedder.embed(texts)
    return {
      status: 200,
      body: {
        object: 'list',
        model: embedder.model,
        data: vectors.map((embedding, index) => ({ object: 'embedding', index, embedding: embedding && Array.from(embedding) })),
        usage: { prompt_tokens: 0, total_tokens: 0 },
        // The column's model record: the space these vectors are in.
        runner: { provider: embedder.name, model: embedder.model, dimensions: embedder.dimensions },
      },
    }
  } catch (failure) {
    return { status: 502, body: { error: { message: `the provider failed: ${errorMessage(failure)}`, type: 'provider_error' } } }
  }
}

const healthy = (m: WorkerMonitor) => m.databaseOk && m.listening()

/** Serves /healthz and /metrics on 127.0.0.1 (or HOST) at port; returns the port and a stop function. */
export async function serveWorkerHttp(
  port: number,
  monitor: WorkerMonitor,
  log: Log,
  host = process.env.RUNNER_HTTP_HOST ?? '127.0.0.1',
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url === '/healthz') {
      const ok = healthy(monitor)
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
      return res.end(
        ok
          ? 'ok\n'
          : `unhealthy: ${monitor.databaseOk ? '' : 'the database is not answering; '}${monitor.listening() ? '' : 'LISTEN is down'}\n`,
      )
    }
    if (req.url === '/metrics') {
      void (monitor.refresh?.() ?? Promise.resolve())
        .catch(() => {})
        .then(() => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
          res.end(renderMetrics(monitor))
        })
      return
    }
    if (req.method === 'POST' && (req.url === '/embed' || req.url === '/v1/embeddings')) {
      void embed(req, monitor).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(`${JSON.stringify(body)}\n`)
      })
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  const bound = (server.address() as AddressInfo).port
  log(`worker: /healthz, /metrics and POST /embed on http://${host}:${bound}`)
  return { port: bound, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}
