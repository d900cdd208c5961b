import { openTarget } from '../db/openTarget.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { uninstallPipeline } from '../pipeline/installPipeline.ts'

/** `runner pipeline uninstall <plan>`: removes what the runner created for auto-embedding. Embeddings and indexes stay. */
export async function pipelineUninstall(planPath: string): Promise<number> {
  const loaded = loadPlan(planPath)
  const db = await openTarget(loaded.plan, log)
  try {
    const targets = await resolveTargets(db, loaded.plan, loaded.path)
    const removed = await uninstallPipeline(db, runnerSchema(loaded.plan.target.runner_schema), targets)
    log(`removed: ${removed.join('; ')}. The embeddings and indexes in the application's tables are kept.`)
    return 0
  } finally {
    await db.close()
  }
}
