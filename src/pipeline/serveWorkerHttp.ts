import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Log } from '../log/log.ts'

// The worker as a service: GET /healthz answers 200 while the worker reaches its database
// and listens for NOTIFY, 503 otherwise (so a supervisor restarts or alerts on it); GET
// /metrics serves the Prometheus text format, every name prefixed runner_.

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
}

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
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  const bound = (server.address() as AddressInfo).port
  log(`worker: /healthz and /metrics on http://${host}:${bound}`)
  return { port: bound, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}
