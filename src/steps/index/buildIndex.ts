import { readIndexBuildProgress } from '../../db/catalog/readIndexBuildProgress.ts'
import { readSetting } from '../../db/catalog/readSettings.ts'
import type { Database } from '../../db/database.ts'
import { withSettings } from '../../db/withSettings.ts'
import type { Progress } from '../../log/progress.ts'

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
): Promise<BuildResult> {
  const wanted: Record<string, string | number> = { maintenance_work_mem: `${settings.maintenanceWorkMemMb}MB` }
  if (settings.parallelWorkers !== undefined) wanted.max_parallel_maintenance_workers = settings.parallelWorkers
  return withSettings(db, wanted, async (session) => {
    const workers = Number(await readSetting(session, 'max_parallel_maintenance_workers'))
    let lastLine = ''
    const poll =
      db.kind === 'postgres'
        ? setInterval(async () => {
            try {
              const r = await readIndexBuildProgress(db, table)
              if (!r) return
              const line = progressLine(table, r)
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
    return { seconds: (performance.now() - started) / 1000, parallelWorkers: workers }
  })
}
