import { startSession } from '../coordinator/driveSession.ts'
import { previewSession } from '../coordinator/previewSession.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'
import type { SessionOptions } from '../checkpoint/sessionState.ts'
import type { Batch } from '../plan/schema.ts'
import type { StepRegistry } from '../steps/step.ts'
import { exitCodeOf, printOutcome } from './outcome.ts'

export interface StartOptions {
  planPath: string
  dryRun: boolean
  sessionsDir: string
  registry: StepRegistry
  signal: AbortSignal
  /** The command line's choices for the session (--provider, --with-worker, --change-model, --narrate). */
  options: SessionOptions
  /** --confirm: asked before each batch that writes. */
  confirm?: (batch: Batch) => Promise<boolean>
  /** Print the outcome as JSON on stdout instead of the session folder. */
  json: boolean
}

export async function start(options: StartOptions): Promise<number> {
  const loaded = loadPlan(options.planPath)
  if (options.dryRun) {
    const preview = await previewSession(loaded, options.registry, options.options, log)
    process.stdout.write(`${preview.text}\n`)
    return preview.refused ? 2 : 0
  }
  const outcome = await startSession(loaded, {
    sessionsDir: options.sessionsDir,
    registry: options.registry,
    signal: options.signal,
    log,
    options: options.options,
    confirm: options.confirm,
  })
  printOutcome(outcome, options.json)
  return exitCodeOf(outcome)
}
