import { existsSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { readSettingBytes } from '../../db/catalog/readSettings.ts'
import { readVectorIndexes } from '../../db/catalog/readVectorIndexes.ts'
import type { VectorIndex } from '../../db/catalog/vocabulary.ts'
import { explainNearest } from '../../db/explainNearest.ts'
import { prewarmIndex } from '../../db/prewarmIndex.ts'
import { adviseMemory, bufferPass, readMemorySettings } from './measureMemory.ts'
import { quoteQualified } from '../../db/quote.ts'
import type { SearchExpression } from '../../db/searchExpression.ts'
import type { Target } from '../../db/target.ts'
import { demoLabelsPath } from '../../demo/seedDemo.ts'
import { rankingMetrics } from '../../embeddings/rankingMetrics.ts'
import { databaseErrorCode, UsageError } from '../../errors.ts'

/** SQLSTATE 42501: the role lacks a privilege the query needs. */
const INSUFFICIENT_PRIVILEGE = '42501'
import { liveWorkers, newWorkerId, unregisterWorker } from '../../pipeline/workerRegistry.ts'
import { releaseJobs } from '../../pipeline/queue.ts'
import { runWorker } from '../../pipeline/runWorker.ts'
import { servesQuery } from '../index/chooseIndexAction.ts'
import { applicationRoles, describeRoleProofs, proveAsApplicationRoles } from './proveAsApplicationRoles.ts'
import type { Step, StepContext } from '../step.ts'
import { judgeCriteria } from './judgeCriteria.ts'
import { readExtension, versionBelow } from '../../db/catalog/readExtension.ts'
import { readPartitions } from '../../db/catalog/readPartitions.ts'
import { measureKnownItems } from './measureKnownItems.ts'
import { measureQuery } from './measureQuery.ts'
import { writeAndRunAppTests } from './writeAppTests.ts'
import { PGVECTOR_DEFAULT, runAt, type SearchQuery, type SearchSetting } from './measureSearch.ts'
import { maySetRole } from '../../db/catalog/readApplicationSide.ts'
import { type QueryMeasurement, type TableValidation, type ValidateOutput, validateOutputSchema } from './output.ts'
import {
  type Probe,
  type ProbesCursor,
  probeAutoEmbedding,
  probesCursor,
  removeLeftoverProbes,
  requeueProbe,
} from './probeAutoEmbedding.ts'
import { proveCapture } from './proveCapture.ts'
import { renderValidation } from './renderValidation.ts'

// Batch 4 of the seed: measure, on the target database, everything the success criteria
// speak of, and judge them from the measurements. It fixes nothing.

type Ctx = StepContext<ProbesCursor>

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
  if (!built) return { search: t.search(ctx.plan.index.precision, ctx.plan.index.rerank_factor) }
  const { expression, cast_type, operator, opclass, query, rerank, where } = built.search
  return {
    search: {
      expression,
      castType: cast_type,
      operator,
      opclass,
      query: query ?? `$1::${cast_type}`,
      ...(rerank ? { rerank: { operator: rerank.operator, castType: rerank.cast_type, factor: rerank.factor } } : {}),
      ...(where ? { where } : {}),
    },
    builtName: built.name,
  }
}

/** The application's searches on a table: the plan's own queries, and the plain nearest-10 ordered by the index's expression. */
function queriesOf(t: Target, search: SearchExpression): { nearest: SearchQuery; app: SearchQuery[] } {
  return {
    nearest: {
      name: 'nearest-10',
      sql: t.nearestSql(search),
      params: (vector) => [vector, 10],
      // What the index must hand over: 10, or for a binary index the 10 x rerank_factor candidates re-ranked.
      limit: 10 * (search.rerank?.factor ?? 1),
      // Binary candidates re-ranked are measured against the full vectors' true nearest.
      ...(search.rerank ? { exactSql: t.nearestSql(t.search('full')) } : {}),
    },
    app: t.plan.queries.map((q) => ({
      name: q.name,
      sql: q.sql,
      params: (vector) => [vector, ...q.params],
      limit: Number(/\blimit\s+(\d+)/i.exec(q.sql)?.[1] ?? 10),
    })),
  }
}

/** What the application sets where it runs a query: the query's own settings, else the plan's for the application, else pgvector's defaults. */
function applicationSetting(plan: Ctx['plan'], t: Target, queryName: string): SearchSetting {
  const own = t.plan.queries.find((q) => q.name === queryName)?.settings
  const declared = { ...plan.target.application_settings, ...own }
  return {
    ef_search: declared.ef_search ?? PGVECTOR_DEFAULT.ef_search,
    iterative_scan: declared.iterative_scan ?? PGVECTOR_DEFAULT.iterative_scan,
  }
}

/**
 * The first of the application's roles that reads the table and that the runner may measure
 * as; null when none (measured as the runner's role, and said). A role that only writes it (an
 * ingest service) runs no search.
 */
async function measuringRole(ctx: Ctx, t: Target): Promise<string | null> {
  for (const role of await applicationRoles(ctx.db, ctx.plan, t)) {
    const { rows } = await ctx.db.query<{ reads: boolean }>(`SELECT has_table_privilege($1, $2::regclass, 'SELECT') AS reads`, [
      role,
      t.table,
    ])
    if (rows[0]!.reads && (await maySetRole(ctx.db, role))) return role
  }
  return null
}

async function measureTable(ctx: Ctx, t: Target): Promise<Omit<TableValidation, 'relevance' | 'known_items' | 'auto_embed'>> {
  const { db, plan } = ctx
  const { search, builtName } = searchOf(ctx, t)
  const onColumn = await readVectorIndexes(db, [], { schema: t.plan.schema, table: t.plan.table, column: t.plan.embedding_column })
  const index: VectorIndex | undefined = builtName
    ? onColumn.find((i) => i.name === builtName)
    : onColumn.find((i) => i.valid && servesQuery(i, search))
  const { rows, nulls, no_text } = await t.counts(db)
  const sharedBuffers = await readSettingBytes(db, 'shared_buffers')
  const natural = await explainNearest(db, t, search)
  const forced = natural.scan === 'index' ? natural : await explainNearest(db, t, search, { forceIndex: true })
  // Only an index the query can use is prewarmed and measured as one.
  const usableIndex = index?.valid && forced.index_name === index.name ? index.name : null
  const vectors = await t.sampleEmbeddings(db, plan.validate.latency_queries)
  // Where the search's pages come from, before any warm-up of the runner's and again once warm
  // (not on the embedded database: its pages are this process's memory).
  const bufferSample = db.kind === 'embedded' ? [] : vectors.slice(0, BUFFER_PASS_QUERIES)
  const nearestSql = t.nearestSql(search)
  const passOf = () => bufferPass(db, nearestSql, (v) => [v, 10], bufferSample, applicationSetting(plan, t, 'nearest-10'))
  const firstPass = usableIndex && bufferSample.length ? await passOf() : null
  const prewarmed = usableIndex ? await prewarmIndex(db, quoteQualified(t.plan.schema, usableIndex)) : false
  ctx.writeArtifact(
    `explain-${t.plan.table}.txt`,
    `-- ${natural.sql}\n\n${natural.plan}\n${forced !== natural ? `\n-- sequential scans disabled:\n${forced.plan}\n` : ''}`,
  )
  const extension = await readExtension(db)
  const appRole = await measuringRole(ctx, t)
  const queryCtx = {
    db,
    plan,
    target: t,
    rows,
    usableIndex,
    // pgvector 0.8.0 added hnsw.iterative_scan.
    iterativeScan: extension.installed_version !== null && !versionBelow(extension.installed_version, '0.8.0'),
    signal: ctx.signal,
    appRole,
  }
  const { nearest, app } = queriesOf(t, search)
  const describeRun = (at: QueryMeasurement['at_default']) =>
    `p95 ${at.p95.toFixed(2)} ms (${at.scan} scan) at ef_search ${at.setting.ef_search}${at.setting.iterative_scan === 'off' ? '' : ` with iterative_scan ${at.setting.iterative_scan}`}${at.scan === 'index' ? `, recall ${at.recall.toFixed(3)}` : ''}`
  const measure = async (q: SearchQuery) => {
    const as = { ...queryCtx, appSetting: applicationSetting(plan, t, q.name) }
    // A query that reads what the role may not (a joined table it has no grant on) is measured as the runner's role, and says so (measured_as null).
    const m = await measureQuery(as, q, vectors).catch((error: unknown) => {
      if (!appRole || databaseErrorCode(error) !== INSUFFICIENT_PRIVILEGE) throw error
      return measureQuery({ ...as, appRole: null }, q, vectors)
    })
    const applied = m.apply.length && m.at_recommended ? `; with ${m.apply.join('; ')}: ${describeRun(m.at_recommended)}` : ''
    ctx.log(
      `  ${t.name} ${q.name} as the application runs it${appRole ? ` (role ${appRole})` : ''}: ${describeRun(m.at_default)}${applied}; exact ${m.exact.p95.toFixed(2)} ms`,
    )
    return m
  }
  const latency = vectors.length ? await measure(nearest) : null
  const appQueries = []
  if (vectors.length) for (const q of app) appQueries.push(await measure(q))
  const buffers = firstPass ? { first_pass: firstPass, warm: await passOf() } : null
  return {
    table: t.name,
    column: t.plan.embedding_column,
    rows,
    nulls,
    no_text,
    index: {
      name: index?.name ?? null,
      opclass: index?.opclass ?? null,
      valid: Boolean(index?.valid && index.method === 'hnsw'),
      size_bytes: index?.size_bytes ?? 0,
      shared_buffers_bytes: sharedBuffers,
      fits_shared_buffers: (index?.size_bytes ?? 0) <= sharedBuffers,
      prewarmed,
    },
    buffers,
    explain: {
      scan: natural.scan,
      index_name: natural.index_name,
      forced_index_name: forced.index_name,
      execution_ms: natural.execution_ms,
    },
    partitions: (await readPartitions(db, t.table)).partitioned ? await t.countsByPartition(db) : [],
    latency,
    app_queries: appQueries,
  }
}

/** recall@k and MRR of the labelled queries, searched as the application searches, at the setting it is told to run. */
async function measureRelevance(
  ctx: Ctx,
  t: Target,
  labels: Label[],
  measured: TableValidation['latency'],
): Promise<TableValidation['relevance']> {
  const tableLabels = labels.filter((l) => l.table === t.plan.table || l.table === t.name)
  if (tableLabels.length === 0) return null
  const k = ctx.plan.criteria.relevance_recall_at_k!.k
  const embedded = await ctx.embeddings().embed(tableLabels.map((l) => l.query))
  const limit = Math.max(10, k)
  const query: SearchQuery = { name: 'relevance', sql: t.nearestSql(searchOf(ctx, t).search), params: (vector) => [vector, limit], limit }
  const setting = measured?.at_default.setting ?? applicationSetting(ctx.plan, t, 'nearest-10')
  const rankings = []
  for (const [i, label] of tableLabels.entries()) {
    const vector = embedded.vectors[i]
    if (!vector) continue
    const run = await runAt(ctx.db, t.table, query, [`[${vector.join(',')}]`], setting)
    rankings.push({ ranked: run.ids[0]!, relevant: new Set(label.relevant_ids.map(String)) })
  }
  const metrics = rankingMetrics(rankings, k)
  return { queries: rankings.length, k, recall_at_k: metrics.recallAtK, mrr: metrics.mrr }
}

/** Known-item retrieval and the model's consistency, searched as the application searches, at the setting it is told to run. */
async function knownItems(ctx: Ctx, t: Target, measured: TableValidation['latency']): Promise<TableValidation['known_items']> {
  const setting = measured?.at_default.setting ?? applicationSetting(ctx.plan, t, 'nearest-10')
  const k = ctx.plan.criteria.relevance_recall_at_k!.k
  const result = await measureKnownItems(ctx.db, t, ctx.embeddings(), searchOf(ctx, t).search, setting, k)
  if (result)
    ctx.log(
      `  ${t.name}: known-item recall@${k} ${result.recall_at_k.toFixed(2)} over ${result.queries} rows searched by half their text; ${result.consistency.matched} of ${result.consistency.sampled} stored vectors are what the model gives for their text now`,
    )
  return result
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
  const probes: Probe[] = []
  // Recorded before it registers: a run killed now leaves a registration the resume removes.
  const cursor: ProbesCursor = { probes, check_worker: startHere ? newWorkerId() : undefined }
  ctx.checkpoint.save(cursor)
  const worker = startHere
    ? runWorker({
        workerId: cursor.check_worker,
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
  const method = plan.validate.auto_embed_check
  const deployed_worker = db.kind === 'embedded' || running > 0
  try {
    for (const [i, t] of targets.entries()) {
      const capture = method === 'requeue' ? await proveCapture(db, ctx.runnerSchema, t) : null
      // As the application writes: its roles, not the runner's.
      const capture_roles = method === 'requeue' ? await proveAsApplicationRoles(db, ctx.runnerSchema, plan, t) : []
      if (capture_roles.length) ctx.log(`  ${t.name}: capture as the application's roles: ${describeRoleProofs(capture_roles)}`)
      if (!startHere && running === 0) {
        const reason = 'no worker is running: start `runner worker <plan>` or pass --with-worker'
        tables[i]!.auto_embed = {
          measured: false,
          delay_ms: null,
          reason,
          method,
          capture,
          capture_roles,
          worker_running: false,
          deployed_worker,
        }
        continue
      }
      const probe =
        method === 'requeue'
          ? await requeueProbe(db, ctx.runnerSchema, t, withinSeconds)
          : await probeAutoEmbedding(db, t, withinSeconds, (inserted) => {
              probes.push(inserted)
              ctx.checkpoint.save(cursor) // before waiting: a crash now leaves a record of the row
            })
      tables[i]!.auto_embed = probe.measured
        ? { measured: true, delay_ms: probe.delay_ms, reason: null, method, capture, capture_roles, worker_running: true, deployed_worker }
        : { measured: false, delay_ms: null, reason: probe.reason, method, capture, capture_roles, worker_running: true, deployed_worker }
    }
  } finally {
    stop.abort()
    await worker
  }
  return note
}

/** Queries in each buffer pass: enough to see a pattern, few enough not to warm the index by themselves. */
const BUFFER_PASS_QUERIES = 20

/**
 * The vector indexes measured, all together, against the server's memory settings; the passes
 * of the largest index are the evidence. None on the embedded database (its memory is this process's).
 */
async function judgeMemory(db: Ctx['db'], tables: TableValidation[]): Promise<ValidateOutput['memory']> {
  if (db.kind === 'embedded') return null
  const settings = await readMemorySettings(db)
  const indexesBytes = tables.reduce((sum, t) => sum + t.index.size_bytes, 0)
  const largest = tables.filter((t) => t.buffers).sort((a, b) => b.index.size_bytes - a.index.size_bytes)[0]
  const passes = largest?.buffers ? { first: largest.buffers.first_pass, warm: largest.buffers.warm } : undefined
  return { settings, indexes_bytes: indexesBytes, advice: adviseMemory(settings, indexesBytes, passes) }
}

export const validateStep: Step<ValidateOutput, ProbesCursor> = {
  name: 'validate',
  output: validateOutputSchema,
  cursor: probesCursor,

  async run(ctx) {
    const { db, plan, log, targets } = ctx
    for (const t of targets) t.requireVector()
    // A run killed while its probe row waited for a worker left that row behind: remove it first.
    const leftover = ctx.checkpoint.load()
    if (leftover?.probes.length)
      log(`  removed ${await removeLeftoverProbes(db, targets, leftover.probes)} probe row(s) left by an interrupted run`)
    // Its check's worker died with it (one run per database), but its registration looks alive for
    // three beats more: it would be counted as a deployed worker. Its jobs go back to the queue.
    if (leftover?.check_worker) {
      await releaseJobs(db, ctx.runnerSchema, leftover.check_worker)
      await unregisterWorker(db, ctx.runnerSchema, leftover.check_worker)
    }
    ctx.checkpoint.save({ probes: [] })
    // Statistics as autovacuum would have left them (the backfill ends with the same): the planner's choices measured here are the application's.
    for (const t of targets) await db.exec(`ANALYZE ${t.table}`)
    const { path: labelsPath, labels } = plan.criteria.relevance_recall_at_k ? labelsFor(ctx) : { path: null, labels: [] }
    const tables: TableValidation[] = []
    for (const t of targets) {
      const measured = await measureTable(ctx, t)
      const relevance = await measureRelevance(ctx, t, labels, measured.latency)
      const known_items = plan.criteria.relevance_recall_at_k ? await knownItems(ctx, t, measured.latency) : null
      tables.push({ ...measured, relevance, known_items, auto_embed: null })
    }
    const within = plan.criteria.auto_embed_within_seconds
    const worker = within === null ? 'not needed (auto_embed criterion off)' : await checkAutoEmbedding(ctx, tables, within)
    const deployed = tables.every((t) => t.auto_embed?.measured && t.auto_embed.deployed_worker)
    const app_tests = plan.target.app_tests ? await writeAndRunAppTests(plan, targets, tables, deployed, log) : null
    const memory = await judgeMemory(db, tables)
    for (const line of memory?.advice ?? []) log(`  memory: ${line}`)
    return {
      database: db.kind,
      worker,
      labelled_queries: labelsPath,
      tables,
      criteria: judgeCriteria(plan, tables, db.kind),
      app_tests,
      memory,
    }
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
    }${
      o.app_tests
        ? o.app_tests.ran
          ? `; the application's tests (${o.app_tests.path}): ${o.app_tests.passed} passed, ${o.app_tests.failed} failed, ${o.app_tests.skipped} skipped`
          : `; wrote the application's tests (${o.app_tests.path}), not run: ${o.app_tests.detail}`
        : ''
    }`,
  criteria: (o) => o.criteria,
  details: renderValidation,
}
