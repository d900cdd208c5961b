import type { Progress } from '../../log/progress.ts'
import type { Database } from '../../db/database.ts'

// Runs one CREATE INDEX on a connection of its own, with the session settings the build
// needs, and shows its progress from pg_stat_progress_create_index (read through another
// connection while the build runs; the embedded database has only one, so it shows none).

export interface BuildSettings {
  maintenanceWorkMemMb: number
  parallelWorkers?: number
}

export interface BuildResult {
  seconds: number
  parallelWorkers: number
}

export async function buildIndex(
  db: Database,
  table: string,
  createSql: string,
  settings: BuildSettings,
  progress: Progress,
): Promise<BuildResult> {
  return db.withSession(async (session) => {
    await session.query(`SELECT set_config('maintenance_work_mem', $1, false)`, [`${settings.maintenanceWorkMemMb}MB`])
    if (settings.parallelWorkers !== undefined) {
      await session.query(`SELECT set_config('max_parallel_maintenance_workers', $1, false)`, [String(settings.parallelWorkers)])
    }
    const workers = await session.query<{ n: string }>(`SELECT current_setting('max_parallel_maintenance_workers') AS n`)
    let lastLine = ''
    const poll =
      db.kind === 'postgres'
        ? setInterval(async () => {
            try {
              const { rows } = await db.query<{
                phase: string
                tuples_done: number
                tuples_total: number
                blocks_done: number
                blocks_total: number
              }>(
                `SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total FROM pg_stat_progress_create_index WHERE relid = to_regclass($1)`,
                [table],
              )
              const r = rows[0]
              if (!r) return
              const counts =
                r.tuples_total > 0
                  ? `${r.tuples_done}/${r.tuples_total} tuples`
                  : r.blocks_total > 0
                    ? `${r.blocks_done}/${r.blocks_total} blocks`
                    : ''
              const line = `  index build on ${table}: ${r.phase}${counts ? `, ${counts}` : ''}`
              if (line !== lastLine) progress.note(line)
              lastLine = line
            } catch {
              // progress is a courtesy; the build itself reports any real error
            }
          }, 1000)
        : undefined
    const started = performance.now()
    try {
      await session.exec(createSql)
    } finally {
      if (poll) clearInterval(poll)
    }
    return { seconds: (performance.now() - started) / 1000, parallelWorkers: Number(workers.rows[0]!.n) }
  })
}
