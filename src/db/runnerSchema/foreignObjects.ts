import type { Queryable } from '../database.ts'
import { type RunnerSchema, RUNNER_TABLES } from './objects.ts'

/**
 * What a schema named as the runner's holds that the runner did not create: the runner
 * installs only into an absent schema, an empty one, or one it installed itself, so that
 * uninstall can never take an application's objects with it.
 */
export async function foreignObjectsIn(db: Queryable, rs: RunnerSchema, version: number): Promise<string[]> {
  const { rows: relations } = await db.query<{ name: string; kind: string }>(
    `SELECT c.relname AS name, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY 1`,
    [rs.name],
  )
  const ours = new Set<string>(version > 0 ? RUNNER_TABLES : [])
  // Before schema version 1 recorded anything, a runner created its queue tables without a record.
  const legacyQueue = version === 0 && relations.some((r) => r.name === 'embedding_queue')
  if (legacyQueue) for (const t of RUNNER_TABLES) ours.add(t)
  const foreign = relations
    .filter((r) => !ours.has(r.name))
    .map((r) => `${r.kind === 'v' ? 'view' : r.kind === 'S' ? 'sequence' : 'table'} ${rs.name}.${r.name}`)

  const recorded = new Set<string>()
  if (version >= 2) {
    const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${rs.created} WHERE kind = 'function' AND schema_name = $1`, [
      rs.name,
    ])
    for (const r of rows) recorded.add(r.name)
  }
  const { rows: functions } = await db.query<{ name: string }>(
    `SELECT p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
     ORDER BY 1`,
    [rs.name],
  )
  // Runners before the record named their capture functions enqueue_<schema>_<table>.
  const isOurs = (name: string) => recorded.has(name) || (version <= 1 && (version === 1 || legacyQueue) && name.startsWith('enqueue_'))
  foreign.push(...functions.filter((f) => !isOurs(f.name)).map((f) => `function ${rs.name}.${f.name}()`))

  const { rows: extensions } = await db.query<{ name: string }>(
    `SELECT e.extname AS name FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = $1 ORDER BY 1`,
    [rs.name],
  )
  // pg_prewarm is the one extension earlier runners installed into their own schema.
  foreign.push(
    ...extensions
      .filter((e) => !(e.name === 'pg_prewarm' && version <= 1 && (version === 1 || legacyQueue)))
      .map((e) => `extension ${e.name}`),
  )
  return foreign
}
