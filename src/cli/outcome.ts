import type { SessionOutcome } from '../coordinator/driveSession.ts'

/**
 * 0: every batch completed and every criterion met; 3: every batch completed and the only
 * criteria not met wait for something to be deployed (a worker), so scripts can tell "fixed,
 * worker still to deploy" from a failure; 1: a batch failed or a criterion was not met.
 */
export function exitCodeOf(outcome: SessionOutcome): 0 | 1 | 3 {
  if (outcome.status === 'failed') return 1
  const unmet = outcome.criteria.filter((c) => !c.passed)
  if (unmet.length === 0) return 0
  return unmet.every((c) => c.pending) ? 3 : 1
}

/** stdout carries the session folder, the one result a script needs. */
export function printSessionDir(outcome: SessionOutcome): void {
  process.stdout.write(`${outcome.sessionDir}\n`)
}
