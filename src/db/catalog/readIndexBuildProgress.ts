import type { Queryable } from '../database.ts'

export interface IndexBuildProgress {
  phase: string
  tuples_done: number
  tuples_total: number
  blocks_done: number
  blocks_total: number
}

/** Where a CREATE INDEX on this table is (pg_stat_progress_create_index); undefined when none runs. */
export async function readIndexBuildProgress(db: Queryable, qualifiedTable: string): Promise<IndexBuildProgress | undefined> {
  const { rows } = await db.query<IndexBuildProgress>(
    'SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total FROM pg_stat_progress_create_index WHERE relid = to_regclass($1)',
    [qualifiedTable],
  )
  return rows[0]
}
