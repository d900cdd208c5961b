import { setTimeout as sleep } from 'node:timers/promises'
import { databaseErrorCode, WorkError } from '../errors.ts'
import { backoffMs } from '../retryTransient.ts'
import type { Database, Queryable } from './database.ts'

// DDL on an application table waits behind every transaction that touched the table, and every
// statement the application sends after it waits behind the DDL: one long report that read a
// table would stall the application's reads for as long as the runner waited. So every
// statement of the runner's that takes a lock the application's reads or writes conflict with
// runs here: one table per transaction, under lock_timeout, retried with jittered backoff, and
// when it gives up it names who held the table (the practice of strong_migrations and pg-osc).

export interface LockPolicy {
  /** How long one try may wait for its lock (the plan's target.lock_timeout_ms). */
  timeoutMs: number
  /** Tries after the first. */
  retries: number
}

export const DEFAULT_LOCK_POLICY: LockPolicy = { timeoutMs: 2000, retries: 5 }

/** lock_timeout expired: SQLSTATE 55P03 lock_not_available. */
export const LOCK_NOT_AVAILABLE = '55P03'

export interface LockHolder {
  pid: number
  application_name: string
  usename: string | null
  state: string | null
  transaction_seconds: number | null
  /** The lock mode it holds; null when it is waited for as a transaction (a snapshot a concurrent build must outlive). */
  mode: string | null
}

/** Sessions other than this one holding a lock on the tables (quoted names), longest-open transaction first. */
export async function readLockHolders(db: Queryable, tables: string[]): Promise<LockHolder[]> {
  const { rows } = await db.query<LockHolder>(
    `SELECT a.pid, a.application_name, a.usename::text, a.state,
            extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds, l.mode
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = ANY($1::regclass[]) AND l.granted AND l.pid <> pg_backend_pid()
     ORDER BY a.xact_start NULLS LAST`,
    [tables],
  )
  return rows
}

export function describeHolders(holders: LockHolder[]): string {
  if (holders.length === 0) return 'no holder was left when it was looked up'
  return holders
    .map(
      (h) =>
        `pid ${h.pid} (application_name '${h.application_name}', user ${h.usename ?? '?'}, ${h.state ?? 'state unknown'}, ` +
        `transaction open ${h.transaction_seconds === null ? '?' : h.transaction_seconds.toFixed(0)} s${h.mode ? `, ${h.mode}` : ''})`,
    )
    .join('; ')
}

/**
 * Runs `work` in a transaction of its own with lock_timeout set, retrying when the lock was not
 * granted in time; `tables` (quoted, qualified) are the application tables the work locks.
 */
export async function withLockTimeout<T>(
  db: Pick<Database, 'transaction' | 'query' | 'exec'>,
  tables: string | string[],
  what: string,
  work: (tx: Queryable) => Promise<T>,
  policy: LockPolicy,
  log: (line: string) => void,
): Promise<T> {
  for (let retry = 0; ; retry++) {
    try {
      return await db.transaction(async (tx) => {
        await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${policy.timeoutMs}ms`])
        return work(tx)
      })
    } catch (error) {
      if (databaseErrorCode(error) !== LOCK_NOT_AVAILABLE) throw error
      const table = [tables].flat().join(', ')
      const holders = describeHolders(await readLockHolders(db, [tables].flat()))
      if (retry >= policy.retries) {
        throw new WorkError(
          `${what}: could not lock ${table} within ${policy.timeoutMs} ms in ${retry + 1} tries; nothing of it was changed. ` +
            `Held by ${holders}. Run \`runner resume\` once that transaction ends (or raise target.lock_timeout_ms)`,
        )
      }
      const waitMs = backoffMs(retry, 500, 8000)
      log(
        `  ${what}: ${table} is locked by ${holders}; gave up after ${policy.timeoutMs} ms, trying again in ${(waitMs / 1000).toFixed(1)} s`,
      )
      await sleep(waitMs)
    }
  }
}
