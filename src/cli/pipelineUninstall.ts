import { openTarget } from '../db/openTarget.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import { uninstallPipeline } from '../pipeline/installPipeline.ts'
import { log } from './driveSession.ts'

/** `runner pipeline uninstall <plan>`: removes the triggers and the runner's schema. Embeddings stay. */
export async function pipelineUninstall(planPath: string): Promise<number> {
  const { plan } = loadPlan(planPath)
  const db = await openTarget(plan, log)
  try {
    const removed = await uninstallPipeline(db, plan)
    log(`removed: ${removed.join('; ')}. The embeddings in the application's tables are kept.`)
    return 0
  } finally {
    await db.close()
  }
}
