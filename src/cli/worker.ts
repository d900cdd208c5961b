import { openTarget } from '../db/openTarget.ts'
import { requireSchemaVersion } from '../db/runnerSchema/migrateRunnerSchema.ts'
import { runnerSchema, WORKER_APPLICATION_NAME } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { createProvider } from '../embeddings/createProvider.ts'
import { describeRefusals, preflight } from '../coordinator/preflight.ts'
import { TargetError } from '../errors.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { runWorker } from '../pipeline/runWorker.ts'

export interface WorkerCommandOptions {
  planPath: string
  provider?: 'local' | 'openai'
  untilEmpty: boolean
  signal: AbortSignal
}

/** `runner worker <plan>`: embeds queued rows until SIGTERM/SIGINT (the current batch finishes first). */
export async function worker(options: WorkerCommandOptions): Promise<number> {
  const loaded = loadPlan(options.planPath)
  const { plan } = loaded
  const db = await openTarget(plan, log, process.env, WORKER_APPLICATION_NAME)
  try {
    const rs = runnerSchema(plan.target.runner_schema)
    await requireSchemaVersion(db, rs) // an older worker never works on a schema it does not know
    const targets = await resolveTargets(db, plan, loaded.path)
    const provider = createProvider(plan, db.kind, log, process.env, options.provider)
    const checked = await db.transaction((tx) => preflight(tx, plan, targets, rs, new Set(['backfill']), () => provider), {
      readOnly: true,
    })
    if (checked.refusals.length) throw new TargetError(describeRefusals(loaded.path, checked.refusals))
    log(`worker started; waiting on NOTIFY ${rs.channel} (poll every ${plan.worker.poll_ms} ms)`)
    const stats = await runWorker({
      db,
      plan,
      targets,
      provider,
      writes: checked.writes,
      signal: options.signal,
      log,
      untilEmpty: options.untilEmpty,
    })
    log(`worker stopped: ${stats.embedded} embedded, ${stats.failed} moved to failed jobs`)
    return 0
  } finally {
    await db.close()
  }
}
