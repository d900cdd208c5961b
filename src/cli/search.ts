import { openTarget } from '../db/openTarget.ts'
import { resolveTargets } from '../db/target.ts'
import { withSettings } from '../db/withSettings.ts'
import { createProvider } from '../embeddings/createProvider.ts'
import { UsageError, WorkError } from '../errors.ts'
import { log } from '../log/log.ts'
import { loadPlan } from '../plan/loadPlan.ts'

export interface SearchOptions {
  query: string
  planPath: string
  table?: string
  k: string
  efSearch?: string
  provider?: 'local' | 'openai'
  /** { query, embedding_ms, tables: [{ table, ms, hits: [{ key, distance, text }] }] } on stdout. */
  json?: boolean
}

/** `runner search "text"`: the application's semantic search, from the command line. */
export async function search(options: SearchOptions): Promise<number> {
  const k = Number(options.k)
  if (!Number.isInteger(k) || k < 1 || k > 1000) throw new UsageError(`-k: expected a whole number from 1 to 1000, got "${options.k}"`)
  const efSearch = options.efSearch === undefined ? undefined : Number(options.efSearch)
  if (efSearch !== undefined && (!Number.isInteger(efSearch) || efSearch < 1 || efSearch > 1000)) {
    throw new UsageError(`--ef-search: expected a whole number from 1 to 1000, got "${options.efSearch}"`)
  }
  const loaded = loadPlan(options.planPath)
  const { plan } = loaded
  const db = await openTarget(plan, log)
  try {
    const targets = (await resolveTargets(db, plan, loaded.path)).filter(
      (t) => !options.table || t.plan.table === options.table || t.name === options.table,
    )
    if (targets.length === 0) {
      throw new UsageError(
        `--table: "${options.table}" is not a target of ${options.planPath} (${plan.target.tables.map((t) => t.table).join(', ')})`,
      )
    }
    for (const t of targets) {
      t.requireVector()
      const { rows, nulls } = await t.counts(db)
      if (rows > 0 && rows === nulls) {
        throw new WorkError(
          `${t.name}.${t.plan.embedding_column} has no embeddings yet (0 of ${rows} rows): run \`runner start ${options.planPath}\` first`,
        )
      }
    }
    const provider = await createProvider(plan, db.kind, log, process.env, options.provider)
    const started = performance.now()
    const [vector] = (await provider.embed([options.query])).vectors
    if (!vector) throw new UsageError('the query could not be embedded')
    const embeddingMs = performance.now() - started
    log(`embedded the query in ${embeddingMs.toFixed(1)} ms`)
    const found: { table: string; ms: number; hits: { key: string; distance: number | null; text: string }[] }[] = []
    for (const t of targets) {
      const sql = t.nearestSql(t.search(plan.index.precision, plan.index.rerank_factor), { withText: true })
      const rows = await withSettings(db, efSearch === undefined ? {} : { 'hnsw.ef_search': efSearch }, async (session) => {
        const queryStarted = performance.now()
        const result = await session.query<{ key: string; distance: number | null; text: string }>(sql, [`[${vector.join(',')}]`, k])
        return { rows: result.rows, ms: performance.now() - queryStarted }
      })
      found.push({ table: t.name, ms: rows.ms, hits: rows.rows })
      if (options.json) continue
      process.stdout.write(`${t.name} (${rows.ms.toFixed(1)} ms):\n`)
      for (const r of rows.rows)
        process.stdout.write(
          `  ${r.distance === null ? 'no embedding' : r.distance.toFixed(4)}  ${t.plan.key}=${r.key}  ${r.text.replace(/\s+/g, ' ').slice(0, 100)}\n`,
        )
    }
    if (options.json)
      process.stdout.write(`${JSON.stringify({ query: options.query, embedding_ms: embeddingMs, tables: found }, null, 2)}\n`)
    return 0
  } finally {
    await db.close()
  }
}
