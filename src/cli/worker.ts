import { createProvider } from '../embeddings/createProvider.ts'
import { checkTargets } from '../coordinator/checkTargets.ts'
import { openTarget } from '../db/openTarget.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { runWorker } from '../pipeline/runWorker.ts'
import { log } from './driveSession.ts'

export interface WorkerCommandOptions {
  planPath: string
  provider?: 'local' | 'openai'
  untilEmpty: boolean
  signal: AbortSignal
}

/** `runner worker <plan>`: embeds queued rows until SIGTERM/SIGINT (the current batch finishes first). */
export async function worker(options: WorkerCommandOptions): Promise<number> {
  const { plan, path } = loadPlan(options.planPath)
  const db = await openTarget(plan, log, process.env, 'runner worker')
  try {
    await checkTargets(db, plan, path)
    const provider = createProvider(plan, db.kind, log, process.env, options.provider)
    await provider.probe()
    log(`worker started; waiting on NOTIFY ${plan.target.runner_schema}_embedding (poll every ${plan.worker.poll_ms} ms)`)
    const stats = await runWorker({ db, plan, provider, signal: options.signal, log, untilEmpty: options.untilEmpty })
    log(`worker stopped: ${stats.embedded} embedded, ${stats.failed} moved to failed jobs`)
    return 0
  } finally {
    await db.close()
  }
}
