import { openTarget } from '../db/openTarget.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { uninstallPipeline } from '../pipeline/installPipeline.ts'
import { liveWorkers } from '../pipeline/workerRegistry.ts'
import { lockPolicy } from '../plan/schema.ts'

/** `runner pipeline uninstall <plan>`: removes what the runner created for auto-embedding. Embeddings and indexes stay. */
export async function pipelineUninstall(planPath: string): Promise<number> {
  const loaded = loadPlan(planPath)
  const db = await openTarget(loaded.plan, log)
  try {
    const targets = await resolveTargets(db, loaded.plan, loaded.path)
    const rs = runnerSchema(loaded.plan.target.runner_schema)
    const workers = await liveWorkers(db, rs, loaded.plan.worker.heartbeat_seconds)
    if (workers.length) {
      log(
        `warning: ${workers.length} worker(s) are running against this database (${workers.map((w) => `${w.host} pid ${w.pid}`).join(', ')}); they will wait until the pipeline is installed again: stop them if it is gone for good`,
      )
    }
    const removed = await uninstallPipeline(db, rs, targets, { locks: lockPolicy(loaded.plan), log })
    log(`removed: ${removed.join('; ')}. The embeddings and indexes in the application's tables are kept.`)
    return 0
  } finally {
    await db.close()
  }
}
