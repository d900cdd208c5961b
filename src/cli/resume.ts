import { resumeSession } from '../coordinator/driveSession.ts'
import { log } from '../log/log.ts'
import type { SessionOptions } from '../checkpoint/sessionState.ts'
import type { Batch } from '../plan/schema.ts'
import type { StepRegistry } from '../steps/step.ts'
import { exitCodeOf, printOutcome } from './outcome.ts'

export interface ResumeOptions {
  sessionDir?: string
  sessionsDir: string
  allowPlanChange: boolean
  registry: StepRegistry
  signal: AbortSignal
  /** The command line's choices for the session (--provider, --with-worker, --change-model, --narrate). */
  options: SessionOptions
  /** --confirm: asked before each batch that writes. */
  confirm?: (batch: Batch) => Promise<boolean>
  /** Print the outcome as JSON on stdout instead of the session folder. */
  json: boolean
}

export async function resume(options: ResumeOptions): Promise<number> {
  const outcome = await resumeSession({
    sessionDir: options.sessionDir,
    sessionsDir: options.sessionsDir,
    allowPlanChange: options.allowPlanChange,
    registry: options.registry,
    signal: options.signal,
    log,
    options: options.options,
    confirm: options.confirm,
  })
  if (outcome.status !== 'already_completed' || options.json) printOutcome(outcome, options.json)
  return exitCodeOf(outcome)
}
