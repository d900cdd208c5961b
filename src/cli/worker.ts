import { describeRefusals, preflight } from '../coordinator/preflight.ts'
import { openTarget } from '../db/openTarget.ts'
import { readSchemaVersion, requireSchemaVersion } from '../db/runnerSchema/migrateRunnerSchema.ts'
import { runnerSchema, WORKER_APPLICATION_NAME } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { createProvider } from '../embeddings/createProvider.ts'
import { databaseErrorCode, TargetError, UsageError } from '../errors.ts'
import { newMonitor, serveWorkerHttp } from '../pipeline/serveWorkerHttp.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { runWorker, STOP_GRACE_MS, waitForPipeline } from '../pipeline/runWorker.ts'

export interface WorkerCommandOptions {
  planPath: string
  provider?: 'local' | 'openai'
  untilEmpty: boolean
  /** Serve /healthz and /metrics here. */
  httpPort?: string
  /** With untilEmpty: the run's counts as JSON on stdout. */
  json?: boolean
  /** Batches in flight at once. */
  concurrency?: string
  signal: AbortSignal
}

/**
 * `runner worker <plan>`: embeds queued rows until SIGTERM/SIGINT. Before the pipeline is
 * installed, or after it is uninstalled, it waits for it (with --until-empty it says so and
 * exits 2: there is nothing it could drain).
 */
export async function worker(options: WorkerCommandOptions): Promise<number> {
  if (options.json && !options.untilEmpty)
    throw new UsageError('--json goes with --once (or --until-empty): a worker that runs until stopped has no result to print')
  const concurrency = Number(options.concurrency ?? 1)
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) {
    throw new UsageError(`--concurrency: expected a whole number from 1 to 32, got "${options.concurrency}"`)
  }
  const loaded = loadPlan(options.planPath)
  const { plan } = loaded
  const db = await openTarget(plan, log, process.env, WORKER_APPLICATION_NAME)
  const rs = runnerSchema(plan.target.runner_schema)
  const installed = async () => (await readSchemaVersion(db, rs)).version > 0
  const port = options.httpPort === undefined ? undefined : Number(options.httpPort)
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    await db.close()
    throw new UsageError(`--http-port: expected a port number from 0 to 65535, got "${options.httpPort}"`)
  }
  const monitor = newMonitor()
  const http = port === undefined ? undefined : await serveWorkerHttp(port, monitor, log)
  options.signal.addEventListener('abort', () =>
    log(
      `worker: stopping: the write in flight finishes, a provider call still out after ${STOP_GRACE_MS / 1000} s is abandoned, held jobs are given back`,
    ),
  )
  try {
    if (options.untilEmpty && !(await installed())) await requireSchemaVersion(db, rs)
    for (;;) {
      if (!(await waitForPipeline(installed, options.signal, log))) return 0
      await requireSchemaVersion(db, rs) // an older worker never works on a schema it does not know
      const targets = await resolveTargets(db, plan, loaded.path)
      const provider = await createProvider(plan, db.kind, log, process.env, options.provider)
      monitor.embedder = provider
      monitor.providerRetries = () => (provider as { stats?: { retries: number } }).stats?.retries ?? 0
      const checked = await db.transaction((tx) => preflight(tx, plan, targets, rs, new Set(['backfill']), async () => provider), {
        readOnly: true,
      })
      if (checked.refusals.length) throw new TargetError(describeRefusals(loaded.path, checked.refusals))
      log(`worker started; waiting on NOTIFY ${rs.channel} (poll every ${plan.worker.poll_ms} ms)`)
      try {
        const stats = await runWorker({
          db,
          plan,
          targets,
          provider,
          writes: checked.writes,
          signal: options.signal,
          log,
          untilEmpty: options.untilEmpty,
          monitor,
          concurrency,
        })
        if (options.json) process.stdout.write(`${JSON.stringify(stats)}\n`)
        log(`worker stopped: ${stats.embedded} embedded, ${stats.failed} moved to failed jobs`)
        return 0
      } catch (error) {
        // The runner's tables went away under it: `runner pipeline uninstall` ran. Wait for a new install.
        if (databaseErrorCode(error) !== '42P01' || (await installed()) || options.untilEmpty) throw error
        log('worker: the auto-embedding pipeline was uninstalled while this worker ran; waiting for it to be installed again')
      }
    }
  } finally {
    await http?.close()
    await db.close()
  }
}
