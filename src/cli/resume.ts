import { Session } from '../checkpoint/session.ts'
import { UsageError } from '../errors.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import type { StepRegistry } from '../steps/step.ts'
import { driveSession, log } from './driveSession.ts'

export interface ResumeOptions {
  sessionDir?: string
  sessionsDir: string
  allowPlanChange: boolean
  registry: StepRegistry
  signal: AbortSignal
  provider?: 'local' | 'openai'
  withWorker?: boolean
}

export async function resume(options: ResumeOptions): Promise<number> {
  const dir = options.sessionDir ?? Session.findLatest(options.sessionsDir, { unfinished: true })
  if (!dir) throw new UsageError(`no unfinished session in ${options.sessionsDir}/; start one with \`runner start plans/feature-1.yaml\``)
  const session = Session.open(dir)
  if (session.state.status === 'completed') {
    log(`session ${session.dir} is already completed; nothing to resume`)
    return session.state.criteria?.every((c) => c.passed) === false ? 1 : 0
  }
  const loaded = loadPlan(session.state.plan_path)
  if (loaded.sha256 !== session.state.plan_sha256) {
    if (!options.allowPlanChange) {
      throw new UsageError(
        `the plan ${loaded.path} changed since this session started (sha256 ${session.state.plan_sha256.slice(0, 12)} then, ${loaded.sha256.slice(0, 12)} now); ` +
          'start a new session, or resume anyway with --allow-plan-change',
      )
    }
    session.event('plan_changed', { from: session.state.plan_sha256, to: loaded.sha256 })
    session.state.plan_sha256 = loaded.sha256
  }
  const known = new Set(session.state.batches.map((b) => b.id))
  const added = loaded.plan.batches.filter((b) => !known.has(b.id))
  if (added.length > 0)
    throw new UsageError(`the plan now has batches this session does not know (${added.map((b) => b.id).join(', ')}); start a new session`)
  session.event('session_resumed', { pid: process.pid })
  return driveSession(session, loaded.plan, options.registry, options.signal, {
    provider: options.provider,
    withWorker: options.withWorker,
  })
}
