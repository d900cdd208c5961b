import type { Queryable } from '../database.ts'
import type { Target } from '../target.ts'
import { readSchemaVersion } from './migrateRunnerSchema.ts'
import type { RunnerSchema } from './objects.ts'

// One model per column: the provider, model and dimensions a column's embeddings come from,
// recorded when the runner first writes it. Every writer is checked against it, and the
// guarded write itself refuses a vector of another model.

export interface ColumnModel {
  table_name: string
  column_name: string
  provider: string
  model: string
  dimensions: number
}

export async function readColumnModels(db: Queryable, rs: RunnerSchema): Promise<ColumnModel[]> {
  if ((await readSchemaVersion(db, rs)).version < 2) return []
  const { rows } = await db.query<ColumnModel>(
    `SELECT table_name, column_name, provider, model, dimensions FROM ${rs.models} ORDER BY 1, 2`,
  )
  return rows
}

/** Binds each column to this model where nothing is recorded yet; returns the columns already bound to another. */
export async function bindColumnModels(
  db: Queryable,
  rs: RunnerSchema,
  targets: Target[],
  provider: { name: string; model: string; dimensions: number },
): Promise<ColumnModel[]> {
  for (const t of targets) {
    await db.query(
      `INSERT INTO ${rs.models} (table_name, column_name, provider, model, dimensions) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [t.name, t.plan.embedding_column, provider.name, provider.model, provider.dimensions],
    )
  }
  return (await readColumnModels(db, rs)).filter(
    (m) => targets.some((t) => t.name === m.table_name && t.plan.embedding_column === m.column_name) && m.model !== provider.model,
  )
}

/** An explicit change of model: the column is bound to the new one; its rows are re-embedded by the next backfill. */
export async function rebindColumnModel(
  db: Queryable,
  rs: RunnerSchema,
  t: Target,
  provider: { name: string; model: string; dimensions: number },
): Promise<void> {
  await db.query(
    `INSERT INTO ${rs.models} (table_name, column_name, provider, model, dimensions) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (table_name, column_name) DO UPDATE SET provider = EXCLUDED.provider, model = EXCLUDED.model, dimensions = EXCLUDED.dimensions, recorded_at = now()`,
    [t.name, t.plan.embedding_column, provider.name, provider.model, provider.dimensions],
  )
}
