import type { SessionOutcome } from '../coordinator/driveSession.ts'

/** 0: every batch completed and every criterion met; 1: a batch failed or a criterion was not met. */
export function exitCodeOf(outcome: SessionOutcome): 0 | 1 {
  return outcome.status !== 'failed' && outcome.criteria.every((c) => c.passed) ? 0 : 1
}

/** stdout carries the session folder, the one result a script needs. */
export function printSessionDir(outcome: SessionOutcome): void {
  process.stdout.write(`${outcome.sessionDir}\n`)
}
