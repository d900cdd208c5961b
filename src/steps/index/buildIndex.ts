import { readIndexBuildProgress } from '../../db/catalog/readIndexBuildProgress.ts'
import { readSetting } from '../../db/catalog/readSettings.ts'
import type { Database } from '../../db/database.ts'
import { withSettings } from '../../db/withSettings.ts'
import type { Progress } from '../../log/progress.ts'
import { describeHolders, LOCK_NOT_AVAILABLE, type LockHolder } from '../../db/withLockTimeout.ts'
import { databaseErrorCode, WorkError } from '../../errors.ts'

// Runs one CREATE INDEX on a connection of its own, with the session settings the build
// needs, and shows its progress from pg_stat_progress_create_index (read through another
// connection while the build runs; the embedded database has only one, so it shows none).

export interface BuildSettings {
  maintenanceWorkMemMb: number
  parallelWorkers?: number
  /**
   * How long a concurrent build may wait for transactions that were open when it started (it
   * must, before it builds and before it validates). Waiting holds up nobody of the
   * application's, but a report left open for hours would hold the run for as long: past this,
   * the build stops, its invalid index is dropped, and the transaction it waited for is named.
   */
  waitSeconds?: number
  /** The plan's lock_timeout, for dropping what a build that gave up left behind. */
  lockTimeoutMs?: number
}

export interface BuildResult {
  seconds: number
  parallelWorkers: number
}

function progressLine(table: string, r: NonNullable<Awaited<ReturnType<typeof readIndexBuildProgress>>>): string {
  const counts =
    r.tuples_total > 0 ? `${r.tuples_done}/${r.tuples_total} tuples` : r.blocks_total > 0 ? `${r.blocks_done}/${r.blocks_total} blocks` : ''
  return `  index build on ${table}: ${r.phase}${counts ? `, ${counts}` : ''}`
}

export async function buildIndex(
  db: Database,
  table: string,
  createSql: string,
  settings: BuildSettings,
  progress: Progress,
  /** The index the statement creates, qualified and quoted: dropped when the build gives up waiting. */
  index?: string,
): Promise<BuildResult> {
  const wanted: Record<string, string | number> = { maintenance_work_mem: `${settings.maintenanceWorkMemMb}MB` }
  if (settings.parallelWorkers !== undefined) wanted.max_parallel_maintenance_workers = settings.parallelWorkers
  if (settings.waitSeconds !== undefined && db.kind === 'postgres') wanted.lock_timeout = `${settings.waitSeconds}s`
  let waitedFor = ''
  const built = await withSettings(db, wanted, async (session) => {
    const workers = Number(await readSetting(session, 'max_parallel_maintenance_workers'))
    const { rows } = await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    let lastLine = ''
    const poll =
      db.kind === 'postgres'
        ? setInterval(async () => {
            try {
              const r = await readIndexBuildProgress(db, table)
              const blockers = await readBlockers(db, rows[0]!.pid)
              if (blockers) waitedFor = blockers
              const line = r ? `${progressLine(table, r)}${blockers ? `; waiting for ${blockers} to end its transaction` : ''}` : ''
              if (line && line !== lastLine) progress.note(line)
              lastLine = line
            } catch {
              // progress is a courtesy; the build itself reports any real error
            }
          }, 1000)
        : undefined
    const started = performance.now()
    try {
      await session.exec(createSql)
    } catch (error) {
      if (databaseErrorCode(error) !== LOCK_NOT_AVAILABLE) throw error
      return null
    } finally {
      if (poll) clearInterval(poll)
    }
    return { seconds: (performance.now() - started) / 1000, parallelWorkers: workers }
  })
  if (built) return built
  // The build gave up waiting: it leaves an invalid index that every write maintains. Dropping it
  // concurrently waits for the same transaction, so it gets lock_timeout; failing that, the next
  // run drops it (an invalid index of the runner's own definition is its own leftover).
  const dropped = index ? await dropLeftover(db, index, settings.lockTimeoutMs ?? 2000) : true
  throw new WorkError(
    `the index build on ${table} waited ${settings.waitSeconds} s for transactions open before it (index.wait_for_transactions_seconds) and stopped; ` +
      `${dropped ? 'its unfinished index was dropped' : `its unfinished index ${index} is left invalid until \`runner resume\` drops it and builds again`}. ` +
      `It waited for ${waitedFor || 'a transaction that ended as it stopped'}. Run \`runner resume\` once that transaction ends`,
  )
}

async function dropLeftover(db: Database, index: string, lockTimeoutMs: number): Promise<boolean> {
  return withSettings(db, { lock_timeout: `${lockTimeoutMs}ms` }, async (session) => {
    try {
      await session.exec(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`)
      return true
    } catch (error) {
      if (databaseErrorCode(error) !== LOCK_NOT_AVAILABLE) throw error
      return false
    }
  })
}

/** The sessions this one waits for, described; empty when it waits for none. */
async function readBlockers(db: Database, pid: number): Promise<string> {
  const { rows } = await db.query<LockHolder>(
    `SELECT a.pid, a.application_name, a.usename::text, a.state, extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds, NULL AS mode
     FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.xact_start`,
    [pid],
  )
  return rows.length ? describeHolders(rows) : ''
}
