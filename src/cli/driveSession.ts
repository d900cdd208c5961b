import { acquireSessionLock } from '../checkpoint/sessionLock.ts'
import type { Session } from '../checkpoint/session.ts'
import { checkTargets } from '../coordinator/checkTargets.ts'
import { createProgress } from '../coordinator/progress.ts'
import { runSession } from '../coordinator/runSession.ts'
import { openTarget } from '../db/openTarget.ts'
import { UsageError } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'
import type { StepRegistry } from '../steps/step.ts'

// What start and resume share: hold the session's lock, open the target, run what is left,
// print where the artifacts are.

export const log = (message: string) => process.stderr.write(`${message}\n`)

export async function driveSession(
  session: Session,
  plan: Plan,
  registry: StepRegistry,
  signal: AbortSignal,
  flags: { provider?: 'local' | 'openai'; withWorker?: boolean } = {},
): Promise<number> {
  const release = acquireSessionLock(session.dir)
  try {
    log(`session: ${session.dir}`)
    const db = await openTarget(plan, log)
    try {
      if (session.state.target && session.state.target !== db.description) {
        throw new UsageError(
          `this session ran against ${session.state.target}, but the target now is ${db.description}; ` +
            `resume with the same $${plan.target.database_url_env}${session.state.target.startsWith('embedded') ? ' (unset)' : ''}, or start a new session`,
        )
      }
      await checkTargets(db, plan, session.state.plan_path)
      session.state.target = db.description
      session.state.status = 'running'
      session.saveState()
      const result = await runSession({
        session,
        plan,
        registry,
        db,
        progress: createProgress(),
        signal,
        log,
        providerOverride: flags.provider,
        withWorker: flags.withWorker,
      })
      const failed = result.criteria.filter((c) => !c.passed)
      if (result.status === 'completed' && failed.length > 0)
        log(`criteria not met: ${failed.map((c) => `${c.id} (${c.measured})`).join(', ')}`)
      log(`${result.status === 'completed' ? 'done' : 'stopped'}; the session's artifacts are in ${session.dir} (start with summary.md)`)
      process.stdout.write(`${session.dir}\n`)
      return result.exitCode
    } finally {
      await db.close()
    }
  } finally {
    release()
  }
}
