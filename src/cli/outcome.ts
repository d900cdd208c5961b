import type { SessionOutcome } from '../coordinator/driveSession.ts'

/**
 * 0: every batch completed and every criterion met; 3: every batch completed and the only
 * criteria not met wait for something to be deployed (a worker), so scripts can tell "fixed,
 * worker still to deploy" from a failure; 1: a batch failed or a criterion was not met. A
 * session paused for a check-in exits 0 (status "paused" in --json).
 */
export function exitCodeOf(outcome: SessionOutcome): 0 | 1 | 3 {
  if (outcome.status === 'failed') return 1
  if (outcome.status === 'paused') return 0 // stopped where it was asked to
  const unmet = outcome.criteria.filter((c) => !c.passed)
  if (unmet.length === 0) return 0
  return unmet.every((c) => c.pending) ? 3 : 1
}

/**
 * stdout carries the result: the session folder, the one thing a script needs; or with --json
 * { session_dir, status, exit_code, criteria, pending } (see the README).
 */
export function printOutcome(outcome: SessionOutcome, json: boolean): void {
  if (!json) {
    process.stdout.write(`${outcome.sessionDir}\n`)
    return
  }
  const pending = [...new Set(outcome.criteria.flatMap((c) => (!c.passed && c.pending ? [c.pending] : [])))]
  const result = {
    session_dir: outcome.sessionDir,
    status: outcome.status,
    exit_code: exitCodeOf(outcome),
    criteria: outcome.criteria,
    pending,
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
}
