import { existsSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { demoLabelsPath } from '../../db/openTarget.ts'
import { quoteIdent, quoteQualified } from '../../db/quote.ts'
import { WORKER_APPLICATION_NAME } from '../../db/runnerObjects.ts'
import { searchExpression, type SearchExpression } from '../../db/searchExpression.ts'
import { rankingMetrics } from '../../embeddings/rankingMetrics.ts'
import { resolveTargets, type ResolvedTarget } from '../../pipeline/resolveTargets.ts'
import { runWorker } from '../../pipeline/runWorker.ts'
import { explainNearestNeighbour } from '../diagnose/explainNearestNeighbour.ts'
import { vectorIndexesOn } from '../diagnose/inspectDatabase.ts'
import type { TargetColumn, VectorIndex } from '../diagnose/output.ts'
import { indexOutputSchema } from '../index/output.ts'
import type { Step, StepContext } from '../step.ts'
import { judgeCriteria } from './judgeCriteria.ts'
import { percentiles, prewarmIndex, recallAt10, runExact, runIndexed, sampleQueryVectors, searchSql } from './measureSearch.ts'
import { validateOutputSchema, type TableValidation, type ValidateOutput } from './output.ts'
import { probeAutoEmbedding, removeLeftoverProbes, type Probe } from './probeAutoEmbedding.ts'
import { renderValidation } from './renderValidation.ts'

// Batch 4 of the seed: measure, on the target database, everything the success criteria
// speak of, and judge them from the measurements. It fixes nothing.

interface Label {
  query: string
  table: string
  relevant_ids: (number | string)[]
}

function labelsFor(ctx: StepContext): { path: string | null; labels: Label[] } {
  const demoLabels = demoLabelsPath(dirname(ctx.plan.target.embedded.path), ctx.db.description)
  const path = ctx.plan.validate.labelled_queries ?? (existsSync(demoLabels) ? demoLabels : null)
  if (!path) return { path: null, labels: [] }
  try {
    return { path, labels: JSON.parse(readFileSync(path, 'utf8')) as Label[] }
  } catch (error) {
    throw new Error(`validate.labelled_queries: cannot read ${path} (${(error as Error).message})`)
  }
}

async function measureTable(
  ctx: StepContext,
  t: ResolvedTarget,
  search: SearchExpression,
  index: VectorIndex | undefined,
): Promise<Omit<TableValidation, 'relevance' | 'auto_embed'> & { efSearch: number }> {
  const { db, plan } = ctx
  const counts = (
    await db.query<{ rows: number; nulls: number }>(
      `SELECT count(*)::int AS rows, (count(*) - count(${t.embedding}))::int AS nulls FROM ${t.table}`,
    )
  ).rows[0]!
  const sharedBuffers = (await db.query<{ b: number }>(`SELECT pg_size_bytes(current_setting('shared_buffers'))::float8 AS b`)).rows[0]!.b
  const prewarmed = index
    ? await prewarmIndex(db, plan.target.runner_schema, quoteIdent(plan.target.runner_schema), quoteQualified(t.plan.schema, index.name))
    : false

  const column: TargetColumn = {
    schema: t.plan.schema,
    table: t.plan.table,
    key: t.plan.key,
    column: t.plan.embedding_column,
    text_columns: t.plan.text_columns,
    distance: t.plan.distance,
    type: t.vectorType,
    dimensions: t.dimensions,
    rows: counts.rows,
    nulls: counts.nulls,
  }
  const natural = (await explainNearestNeighbour(db, column, search))!
  const forced = natural.scan === 'index' ? natural : (await explainNearestNeighbour(db, column, search, { forceIndex: true }))!
  ctx.writeArtifact(
    `explain-${t.plan.table}.txt`,
    `-- ${natural.sql}\n\n${natural.plan}\n${forced !== natural ? `\n-- sequential scans disabled:\n${forced.plan}\n` : ''}`,
  )

  const vectors = await sampleQueryVectors(db, t, plan.validate.latency_queries)
  let latency: TableValidation['latency'] = null
  let efSearch = 40
  if (vectors.length > 0) {
    const sql = searchSql(t, search)
    await runIndexed(db, sql, vectors.slice(0, 20), 40) // warm-up: caches, plans, connections
    const exactVectors = vectors.slice(0, plan.validate.exact_queries)
    const exact = await runExact(db, sql, exactVectors)
    const sweep = []
    for (const ef of [...plan.validate.ef_search_candidates].sort((a, b) => a - b)) {
      if (ctx.signal.aborted) break
      const run = await runIndexed(db, sql, vectors, ef)
      const p = percentiles(run.ms)
      sweep.push({
        ef_search: ef,
        recall_at_10: recallAt10(run.distances.slice(0, exactVectors.length), exact.distances),
        p50: p.p50,
        p95: p.p95,
      })
    }
    const reaching = sweep.find((s) => s.recall_at_10 >= plan.validate.recall_target)
    const chosen = reaching ?? [...sweep].sort((a, b) => b.recall_at_10 - a.recall_at_10)[0]!
    efSearch = chosen.ef_search
    const final = await runIndexed(db, sql, vectors, efSearch)
    const indexP = percentiles(final.ms)
    const exactP = percentiles(exact.ms)
    latency = {
      queries: vectors.length,
      exact_queries: exactVectors.length,
      ef_search: efSearch,
      index: indexP,
      exact: exactP,
      speedup_p50: exactP.p50 / indexP.p50,
      sweep,
      recommended_ef_search: efSearch,
      recall_target_reached: Boolean(reaching),
    }
    ctx.log(
      `  ${t.name}: p95 ${indexP.p95.toFixed(2)} ms at ef_search ${efSearch} (recall@10 ${chosen.recall_at_10.toFixed(3)}); exact scan p95 ${exactP.p95.toFixed(2)} ms`,
    )
  }
  return {
    table: t.name,
    column: t.plan.embedding_column,
    rows: counts.rows,
    nulls: counts.nulls,
    index: {
      name: index?.name ?? null,
      valid: Boolean(index?.valid && index.method === 'hnsw'),
      size_bytes: index?.size_bytes ?? 0,
      shared_buffers_bytes: sharedBuffers,
      fits_shared_buffers: (index?.size_bytes ?? 0) <= sharedBuffers,
      prewarmed,
    },
    explain: {
      scan: natural.scan,
      index_name: natural.index_name,
      forced_index_name: forced.index_name,
      execution_ms: natural.execution_ms,
    },
    latency,
    efSearch,
  }
}

export const validateStep: Step<ValidateOutput> = {
  name: 'validate',
  output: validateOutputSchema,

  async run(ctx) {
    const { db, plan, log } = ctx
    // Without an index batch in the plan, the application's plain query is measured as it is.
    const index = ctx.inputs.index === undefined ? { indexes: [] } : indexOutputSchema.parse(ctx.inputs.index)
    const targets = await resolveTargets(db, plan)
    // A run killed while its probe row waited for a worker left that row behind: remove it first.
    const leftover = ctx.checkpoint.load<{ probes: Probe[] }>()?.probes ?? []
    if (leftover.length) log(`  removed ${await removeLeftoverProbes(db, targets, leftover)} probe row(s) left by an interrupted run`)
    const probes: Probe[] = []
    ctx.checkpoint.save({ probes })
    const { path: labelsPath, labels } = plan.criteria.relevance_recall_at_k ? labelsFor(ctx) : { path: null, labels: [] }
    const tables: TableValidation[] = []
    for (const t of targets) {
      const built = index.indexes.find((i) => i.table === t.name && i.column === t.plan.embedding_column)
      const search: SearchExpression = built
        ? {
            expression: built.search.expression,
            castType: built.search.cast_type,
            operator: built.search.operator,
            opclass: built.search.opclass,
          }
        : searchExpression(t.plan.embedding_column, t.dimensions, t.vectorType, t.plan.distance, plan.index.precision)
      const onColumn = await vectorIndexesOn(db, { schema: t.plan.schema, table: t.plan.table, column: t.plan.embedding_column })
      const columnIndex = built ? onColumn.find((i) => i.name === built.name) : onColumn.find((i) => i.method === 'hnsw' && i.valid)
      const { efSearch, ...measured } = await measureTable(ctx, t, search, columnIndex)

      let relevance: TableValidation['relevance'] = null
      const tableLabels = labels.filter((l) => l.table === t.plan.table || l.table === t.name)
      if (tableLabels.length > 0) {
        const k = plan.criteria.relevance_recall_at_k!.k
        const embedded = await ctx.embeddings().embed(tableLabels.map((l) => l.query))
        const sql = searchSql(t, search, Math.max(10, k))
        const rankings = []
        for (const [i, label] of tableLabels.entries()) {
          const vector = embedded.vectors[i]
          if (!vector) continue
          const run = await runIndexed(db, sql, [`[${vector.join(',')}]`], efSearch)
          rankings.push({ ranked: run.ids[0]!, relevant: new Set(label.relevant_ids.map(String)) })
        }
        const metrics = rankingMetrics(rankings, k)
        relevance = { queries: rankings.length, k, recall_at_k: metrics.recallAtK, mrr: metrics.mrr }
      }
      tables.push({ ...measured, relevance, auto_embed: null })
    }

    let workerNote = 'not needed (auto_embed criterion off)'
    if (plan.criteria.auto_embed_within_seconds !== null) {
      const running =
        db.kind === 'postgres'
          ? (
              await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [
                WORKER_APPLICATION_NAME,
              ])
            ).rows[0]!.n
          : 0
      // The embedded database is one process: no separate worker can reach it, so one runs here.
      const startHere = ctx.withWorker || db.kind === 'embedded'
      const stop = new AbortController()
      const worker = startHere
        ? runWorker({ db, plan, provider: ctx.embeddings(), signal: stop.signal, log: () => {}, statsIntervalMs: 3_600_000 })
        : undefined
      workerNote = startHere
        ? `started by the validate batch for the check (${db.kind === 'embedded' ? 'embedded database' : '--with-worker'})`
        : `${running} \`runner worker\` process(es) connected`
      log(`  auto-embedding check: worker ${workerNote}`)
      try {
        for (const [i, t] of targets.entries()) {
          if (!startHere && running === 0) {
            tables[i]!.auto_embed = {
              measured: false,
              delay_ms: null,
              reason: 'no worker is running: start `runner worker <plan>` or pass --with-worker',
            }
            continue
          }
          const probe = await probeAutoEmbedding(db, t, plan.criteria.auto_embed_within_seconds, (inserted) => {
            probes.push(inserted)
            ctx.checkpoint.save({ probes }) // before waiting: a crash now leaves a record of the row
          })
          tables[i]!.auto_embed = probe.measured
            ? { measured: true, delay_ms: probe.delay_ms, reason: null }
            : { measured: false, delay_ms: null, reason: probe.reason }
        }
      } finally {
        stop.abort()
        await worker
      }
    }
    return { database: db.kind, worker: workerNote, labelled_queries: labelsPath, tables, criteria: judgeCriteria(plan, tables, db.kind) }
  },

  summarize: (o) =>
    `${o.criteria.filter((c) => c.passed).length} of ${o.criteria.length} criteria met${
      o.criteria.some((c) => !c.passed)
        ? `; not met: ${o.criteria
            .filter((c) => !c.passed)
            .map((c) => c.id)
            .join(', ')}`
        : ''
    }`,
  criteria: (o) => o.criteria,
  details: renderValidation,
}
