import { hostname } from 'node:os'
import { TargetError } from '../errors.ts'
import type { Database } from './database.ts'
import type { RunnerSchema } from './runnerSchema/objects.ts'

// One run per target database: start and resume hold a PostgreSQL advisory lock, keyed by
// the runner's schema, on a connection of their own for as long as they may write. A second
// run is refused at once and told who holds it (the holder names itself in application_name:
// pid, host and session). Workers do not take it: they run beside a session by design.

const LOCK_SPACE = 'runner session'

export async function withTargetLock<T>(db: Database, rs: RunnerSchema, sessionId: string, work: () => Promise<T>): Promise<T> {
  if (db.kind === 'embedded') return work() // one process owns the embedded database's folder
  const holder = `runner ${process.pid}@${hostname().slice(0, 16)} ${sessionId}`.slice(0, 63)
  return db.withSession(async (session) => {
    await session.query(`SELECT set_config('application_name', $1, false)`, [holder])
    const { rows } = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS locked', [
      LOCK_SPACE,
      rs.name,
    ])
    if (!rows[0]!.locked) {
      const { rows: holders } = await session.query<{ name: string; addr: string | null }>(
        `SELECT a.application_name AS name, host(a.client_addr) AS addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = hashtext($1)::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2`,
        [LOCK_SPACE, rs.name],
      )
      const who = holders[0] ? `${holders[0].name}${holders[0].addr ? ` (from ${holders[0].addr})` : ''}` : 'another process'
      throw new TargetError(
        `another runner is working on this database (schema ${rs.name}): ${who}. Wait for it to finish, or stop it; one run per database`,
      )
    }
    try {
      return await work()
    } finally {
      await session.query('SELECT pg_advisory_unlock(hashtext($1), hashtext($2))', [LOCK_SPACE, rs.name]).catch(() => {})
    }
  })
}
