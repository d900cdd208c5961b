import type { Database, Queryable } from './database.ts'

/**
 * Runs work on one connection with these settings (hnsw.ef_search, maintenance_work_mem,
 * enable_indexscan...), set as values through set_config, never spliced into SQL. They last
 * for that connection only: the pooled connection is reset afterwards.
 */
export async function withSettings<T>(
  db: Pick<Database, 'withSession'>,
  settings: Record<string, string | number>,
  work: (session: Queryable) => Promise<T>,
): Promise<T> {
  return db.withSession(async (session) => {
    for (const [name, value] of Object.entries(settings)) await session.query('SELECT set_config($1, $2, false)', [name, String(value)])
    return work(session)
  })
}
