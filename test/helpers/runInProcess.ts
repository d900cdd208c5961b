import { Session } from '../../src/checkpoint/session.ts'
import { createProgress } from '../../src/log/progress.ts'
import { runChecked } from '../../src/coordinator/driveSession.ts'
import type { RunResult } from '../../src/coordinator/runSession.ts'
import type { Database } from '../../src/db/database.ts'
import { loadPlan } from '../../src/plan/loadPlan.ts'
import { orderBatches } from '../../src/plan/orderBatches.ts'
import type { StepRegistry } from '../../src/steps/step.ts'
import { tempDir, writePlan } from './index.ts'

/** Runs a plan through the real coordinator (guards included) in this process, on an open database. */
export async function runInProcess(
  plan: unknown,
  db: Database,
  registry: StepRegistry,
): Promise<RunResult & { session: Session; outputs: Record<string, any> }> {
  const dir = tempDir()
  const loaded = loadPlan(writePlan(dir, plan))
  const session = Session.create(`${dir}/sessions`, loaded, orderBatches(loaded.plan.batches))
  const silent = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream
  const result = await runChecked({
    session,
    plan: loaded.plan,
    registry,
    db,
    progress: createProgress(silent),
    signal: new AbortController().signal,
    log: () => {},
  })
  const outputs: Record<string, any> = {}
  for (const b of session.state.batches) if (b.output_path) outputs[b.id] = JSON.parse(session.readArtifact(b.output_path))
  return { ...result, session, outputs }
}
