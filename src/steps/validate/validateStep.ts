import { existsSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { readSettingBytes } from '../../db/catalog/readSettings.ts'
import { readVectorIndexes } from '../../db/catalog/readVectorIndexes.ts'
import type { VectorIndex } from '../../db/catalog/vocabulary.ts'
import { explainNearest } from '../../db/explainNearest.ts'
import { prewarmIndex } from '../../db/prewarmIndex.ts'
import { quoteQualified } from '../../db/quote.ts'
import type { SearchExpression } from '../../db/searchExpression.ts'
import type { Target } from '../../db/target.ts'
import { demoLabelsPath } from '../../demo/seedDemo.ts'
import { rankingMetrics } from '../../embeddings/rankingMetrics.ts'
import { UsageError } from '../../errors.ts'
import { liveWorkers } from '../../pipeline/workerRegistry.ts'
import { runWorker } from '../../pipeline/runWorker.ts'
import type { Step, StepContext } from '../step.ts'
import { judgeCriteria } from './judgeCriteria.ts'
import { percentiles, recallAt10, runExact, runIndexed } from './measureSearch.ts'
import { type TableValidation, type ValidateOutput, validateOutputSchema } from './output.ts'
import { type Probe, probeAutoEmbedding, probesCursor, removeLeftoverProbes, requeueProbe } from './probeAutoEmbedding.ts'
import { proveCapture } from './proveCapture.ts'
import { renderValidation } from './renderValidation.ts'

// Batch 4 of the seed: measure, on the target database, everything the success criteria
// speak of, and judge them from the measurements. It fixes nothing.

type Ctx = StepContext<{ probes: Probe[] }>

interface Label {
  query: string
  table: string
  relevant_ids: (number | string)[]
}

function labelsFor(ctx: Ctx): { path: string | null; labels: Label[] } {
  const demoLabels = demoLabelsPath(dirname(ctx.plan.target.embedded.path), ctx.db.description)
  const path = ctx.plan.validate.labelled_queries ?? (existsSync(demoLabels) ? demoLabels : null)
  if (!path) return { path: null, labels: [] }
  try {
    return { path, labels: JSON.parse(readFileSync(path, 'utf8')) as Label[] }
  } catch (error) {
    throw new UsageError(`validate.labelled_queries: cannot read ${path} (${(error as Error).message})`)
  }
}

/** The search the index batch built for, or the plan's own when no index batch ran. */
function searchOf(ctx: Ctx, t: Target): { search: SearchExpression; builtName?: string } {
  const built = ctx.inputs.index?.indexes.find((i) => i.table === t.name && i.column === t.plan.embedding_column)
  if (!built) return { search: t.search(ctx.plan.index.precision) }
  const { expression, cast_type, operator, opclass } = built.search
  return { search: { expression, castType: cast_type, operator, opclass }, builtName: built.name }
}

/** Latency at every ef_search candidate against the exact scan, recall by distance, and the recommended setting. */
async function measureLatency(ctx: Ctx, t: Target, sql: string): Promise<TableValidation['latency']> {
  const { db, plan } = ctx
  const vectors = await t.sampleEmbeddings(db, plan.validate.latency_queries)
  if (vectors.length === 0) return null
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
  const final = await runIndexed(db, sql, vectors, chosen.ef_search)
  const indexP = percentiles(final.ms)
  const exactP = percentiles(exact.ms)
  ctx.log(
    `  ${t.name}: p95 ${indexP.p95.toFixed(2)} ms at ef_search ${chosen.ef_search} (recall@10 ${chosen.recall_at_10.toFixed(3)}); exact scan p95 ${exactP.p95.toFixed(2)} ms`,
  )
  return {
    queries: vectors.length,
    exact_queries: exactVectors.length,
    ef_search: chosen.ef_search,
    index: indexP,
    exact: exactP,
    speedup_p50: exactP.p50 / indexP.p50,
    sweep,
    recommended_ef_search: chosen.ef_search,
    recall_target_reached: Boolean(reaching),
  }
}

async function measureTable(ctx: Ctx, t: Target): Promise<Omit<TableValidation, 'relevance' | 'auto_embed'>> {
  const { db } = ctx
  const { search, builtName } = searchOf(ctx, t)
  const onColumn = await readVectorIndexes(db, [], { schema: t.plan.schema, table: t.plan.table, column: t.plan.embedding_column })
  const index: VectorIndex | undefined = builtName
    ? onColumn.find((i) => i.name === builtName)
    : onColumn.find((i) => i.method === 'hnsw' && i.valid)
  const { rows, nulls } = await t.counts(db)
  const sharedBuffers = await readSettingBytes(db, 'shared_buffers')
  const prewarmed = index ? await prewarmIndex(db, quoteQualified(t.plan.schema, index.name)) : false
  const natural = await explainNearest(db, t, search)
  const forced = natural.scan === 'index' ? natural : await explainNearest(db, t, search, { forceIndex: true })
  ctx.writeArtifact(
    `explain-${t.plan.table}.txt`,
    `-- ${natural.sql}\n\n${natural.plan}\n${forced !== natural ? `\n-- sequential scans disabled:\n${forced.plan}\n` : ''}`,
  )
  return {
    table: t.name,
    column: t.plan.embedding_column,
    rows,
    nulls,
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
    latency: await measureLatency(ctx, t, t.nearestSql(search)),
  }
}

/** recall@k and MRR of the labelled queries, searched as the application searches, at the recommended ef_search. */
async function measureRelevance(ctx: Ctx, t: Target, labels: Label[], efSearch: number): Promise<TableValidation['relevance']> {
  const tableLabels = labels.filter((l) => l.table === t.plan.table || l.table === t.name)
  if (tableLabels.length === 0) return null
  const k = ctx.plan.criteria.relevance_recall_at_k!.k
  const embedded = await ctx.embeddings().embed(tableLabels.map((l) => l.query))
  const sql = t.nearestSql(searchOf(ctx, t).search)
  const rankings = []
  for (const [i, label] of tableLabels.entries()) {
    const vector = embedded.vectors[i]
    if (!vector) continue
    const run = await runIndexed(ctx.db, sql, [`[${vector.join(',')}]`], efSearch, Math.max(10, k))
    rankings.push({ ranked: run.ids[0]!, relevant: new Set(label.relevant_ids.map(String)) })
  }
  const metrics = rankingMetrics(rankings, k)
  return { queries: rankings.length, k, recall_at_k: metrics.recallAtK, mrr: metrics.mrr }
}

/** A probe row per table, embedded by a worker: one started here, or the `runner worker` processes already running. */
async function checkAutoEmbedding(ctx: Ctx, tables: TableValidation[], withinSeconds: number): Promise<string> {
  const { db, plan, targets } = ctx
  const running = (await liveWorkers(db, ctx.runnerSchema, plan.worker.heartbeat_seconds)).length
  // The embedded database is one process: no separate worker can reach it, so one runs here.
  const startHere = plan.validate.start_worker || db.kind === 'embedded'
  // Proved with a worker of the check's own, the pipeline still needs one that outlives this run.
  const temporaryOnly = startHere && db.kind === 'postgres' && running === 0
  const note = startHere
    ? `started by the validate batch for the check (${db.kind === 'embedded' ? 'embedded database' : '--with-worker'})${temporaryOnly ? '; no `runner worker` is registered to embed new rows after this run: deploy one (deploy/)' : ''}`
    : `${running} \`runner worker\` process(es) registered`
  ctx.log(`  auto-embedding check: worker ${note}`)
  const stop = new AbortController()
  const worker = startHere
    ? runWorker({
        db,
        plan,
        targets,
        provider: ctx.embeddings(),
        writes: ctx.writes,
        signal: stop.signal,
        log: () => {},
        statsIntervalMs: 3_600_000,
      })
    : undefined
  const probes: Probe[] = []
  const method = plan.validate.auto_embed_check
  try {
    for (const [i, t] of targets.entries()) {
      const capture = method === 'requeue' ? await proveCapture(db, ctx.runnerSchema, t) : null
      if (!startHere && running === 0) {
        const reason = 'no worker is running: start `runner worker <plan>` or pass --with-worker'
        tables[i]!.auto_embed = { measured: false, delay_ms: null, reason, method, capture, worker_running: false }
        continue
      }
      const probe =
        method === 'requeue'
          ? await requeueProbe(db, ctx.runnerSchema, t, withinSeconds)
          : await probeAutoEmbedding(db, t, withinSeconds, (inserted) => {
              probes.push(inserted)
              ctx.checkpoint.save({ probes }) // before waiting: a crash now leaves a record of the row
            })
      tables[i]!.auto_embed = probe.measured
        ? { measured: true, delay_ms: probe.delay_ms, reason: null, method, capture, worker_running: true }
        : { measured: false, delay_ms: null, reason: probe.reason, method, capture, worker_running: true }
    }
  } finally {
    stop.abort()
    await worker
  }
  return note
}

export const validateStep: Step<ValidateOutput, { probes: Probe[] }> = {
  name: 'validate',
  output: validateOutputSchema,
  cursor: probesCursor,

  async run(ctx) {
    const { db, plan, log, targets } = ctx
    for (const t of targets) t.requireVector()
    // A run killed while its probe row waited for a worker left that row behind: remove it first.
    const leftover = ctx.checkpoint.load()?.probes ?? []
    if (leftover.length) log(`  removed ${await removeLeftoverProbes(db, targets, leftover)} probe row(s) left by an interrupted run`)
    ctx.checkpoint.save({ probes: [] })
    const { path: labelsPath, labels } = plan.criteria.relevance_recall_at_k ? labelsFor(ctx) : { path: null, labels: [] }
    const tables: TableValidation[] = []
    for (const t of targets) {
      const measured = await measureTable(ctx, t)
      const relevance = await measureRelevance(ctx, t, labels, measured.latency?.ef_search ?? 40)
      tables.push({ ...measured, relevance, auto_embed: null })
    }
    const within = plan.criteria.auto_embed_within_seconds
    const worker = within === null ? 'not needed (auto_embed criterion off)' : await checkAutoEmbedding(ctx, tables, within)
    return { database: db.kind, worker, labelled_queries: labelsPath, tables, criteria: judgeCriteria(plan, tables, db.kind) }
  },

  async preview({ plan, targets }) {
    return [
      `measures NULLs, index validity, EXPLAIN, latency over ${plan.validate.latency_queries} queries against ${plan.validate.exact_queries} exact scans, recall over hnsw.ef_search ${plan.validate.ef_search_candidates.join(', ')}`,
      plan.validate.auto_embed_check === 'requeue'
        ? `auto-embedding: the capture proved on a rolled-back copy of ${targets.map((t) => t.name).join(', ')}, one existing row each queued again for a worker; nothing written to the application's tables but that row's embedding`
        : 'auto-embedding: a probe row inserted through each application table, then deleted (validate.auto_embed_check: insert_row)',
    ]
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
