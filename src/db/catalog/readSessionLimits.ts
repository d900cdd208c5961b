import type { Queryable } from '../database.ts'

// What the server and the role impose on the runner's sessions before the runner has said
// anything: a read-only server or default, and timeouts set on the role or the database.

export interface SessionLimits {
  role: string
  /** A standby: nothing can be written. */
  in_recovery: boolean
  /** default_transaction_read_only as this session started. */
  read_only_default: boolean
  /** statement_timeout, lock_timeout, idle_in_transaction_session_timeout set for the role or the database (ALTER ROLE/DATABASE ... SET). */
  timeouts: { name: string; value: string; set_on: string }[]
}

export async function readSessionLimits(db: Queryable): Promise<SessionLimits> {
  const { rows } = await db.query<{ role: string; in_recovery: boolean; read_only_default: string }>(
    `SELECT current_user AS role, pg_is_in_recovery() AS in_recovery, current_setting('default_transaction_read_only') AS read_only_default`,
  )
  const { rows: timeouts } = await db.query<{ name: string; value: string; set_on: string }>(
    `SELECT split_part(setting, '=', 1) AS name, substr(setting, strpos(setting, '=') + 1) AS value,
            CASE WHEN s.setrole = 0 THEN 'the database' WHEN s.setdatabase = 0 THEN 'the role' ELSE 'the role in this database' END AS set_on
     FROM pg_db_role_setting s, unnest(s.setconfig) AS setting
     WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
       AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
       AND split_part(setting, '=', 1) IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')
       AND substr(setting, strpos(setting, '=') + 1) NOT IN ('0', '0ms', '0s')
     ORDER BY 1, 3`,
  )
  return { role: rows[0]!.role, in_recovery: rows[0]!.in_recovery, read_only_default: rows[0]!.read_only_default === 'on', timeouts }
}
