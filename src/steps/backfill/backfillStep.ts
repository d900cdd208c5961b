import { setTimeout as sleep } from 'node:timers/promises'
import { z } from 'zod'
import type { CursorSpec } from '../../checkpoint/session.ts'
import { readPartitions } from '../../db/catalog/readPartitions.ts'
import type { Target, TextRow } from '../../db/target.ts'
import type { EmbeddingProvider, EmbedResult } from '../../embeddings/provider.ts'
import { Interrupted, ProviderError, TargetError, WorkError } from '../../errors.ts'
import { bindColumnModels, rebindColumnModel } from '../../db/runnerSchema/columnModels.ts'
import { readSchemaVersion } from '../../db/runnerSchema/migrateRunnerSchema.ts'
import { installPipeline } from '../../pipeline/installPipeline.ts'
import { type EmbeddedRow, stageEmbeddings, writeEmbeddings, writeStaged, writeStagedBatch } from '../../pipeline/writeEmbeddings.ts'
import type { Step, StepContext } from '../step.ts'
import { backoffMs } from '../../retryTransient.ts'
import { queueKeys } from '../../pipeline/queue.ts'
import { requireCaptureForRoles } from '../validate/proveAsApplicationRoles.ts'
import { cosine, SAME_MODEL_COSINE } from '../../embeddings/sameModel.ts'
import { lockPolicy } from '../../plan/schema.ts'
import { batchWritten } from '../../collectGarbage.ts'
import { backfillThroughFleet, countFleetWork, describeFleet, fleetCursorSchema, fleetOutputSchema } from './fleetBackfill.ts'

// Batch 3b of the seed: backfill the NULL embeddings. The capture is installed first, so
// nothing written during the backfill is missed. Pages through NULL rows by key (never
// OFFSET), embeds a batch, saves it in the runner's schema, and writes it from there in one
// statement while the next is read and embedded; the cursor is saved after each write. A
// resume writes whatever was saved and not written first, so a crash pays the provider for at
// most the batch being embedded. A provider that is free to repeat (the local one) is not
// worth the save: its batches are written straight away, and a crash recomputes up to two.

const MAX_LISTED_FAILURES = 100
/** Batches between two VACUUMs of the staging table (each batch leaves ~1.5 MB dead at 256 x 1536). */
const VACUUM_STAGING_EVERY = 64
const COST_SAMPLE_ROWS = 1000

const estimateSchema = z.object({
  rows: z.number().int(),
  /** Of those, rows whose stored vector is not this model's (at most: unknown-origin ones that match are kept). */
  reembed_rows: z.number().int().default(0),
  tokens: z.number(),
  usd: z.number().nullable(),
  tokenizer: z.string(),
  sampled_rows: z.number().int(),
})
const failureSchema = z.object({ table: z.string(), key: z.string(), reason: z.string() })
/**
 * Seconds the loop spent waiting on each stage: for the next page, for the provider, for a
 * batch to be saved, for the previous batch's write. Which of them is largest says what set
 * the pace (a faster provider tier, or the database); the rest of the time is bookkeeping.
 */
const stagesSchema = z.object({ reading: z.number(), embedding: z.number(), saving: z.number(), writing: z.number() })
type Stages = z.infer<typeof stagesSchema>
/** How the vectors of unknown origin in one column were judged. */
const unknownCheckSchema = z.object({
  unknown: z.number().int(),
  /** Zero vectors, and norms the model never gives (it gives unit vectors): embedded again whatever the sample says. */
  implausible: z.number().int(),
  sampled: z.number().int(),
  matched: z.boolean(),
  /** The share of the set the sample cannot rule out being another model's (3 / sampled); 0 when every one was compared. */
  bound: z.number(),
})
type UnknownCheck = z.infer<typeof unknownCheckSchema>

const outputSchema = z.object({
  provider: z.string(),
  model: z.string(),
  estimate: estimateSchema,
  tables: z.array(
    z.object({
      table: z.string(),
      written: z.number().int(),
      /** Stored vectors embedded again: another model's (after --change-model), or of unknown origin that did not match. */
      reembedded: z.number().int().default(0),
      /** Stored vectors of unknown origin that a sample proved to be this model's, recorded as such. */
      adopted: z.number().int().default(0),
      failed: z.number().int(),
      /** NULL rows with text still to embed at the end. */
      remaining_null: z.number().int(),
      /** NULL rows with no text to embed: left NULL on purpose. */
      no_text: z.number().int().default(0),
      /** Rows the application held every time the backfill came to write them: queued for the workers. */
      busy_queued: z.number().int().default(0),
      /** How vectors of unknown origin were judged, when there were any. */
      unknown_check: unknownCheckSchema.nullable().default(null),
    }),
  ),
  failures: z.array(failureSchema),
  seconds: z.number(),
  stages: stagesSchema.optional(),
  /** direct: this process embedded the NULL rows; queue: the workers did (backfill.mode). */
  mode: z.enum(['direct', 'queue']).default('direct'),
  /** With mode queue: what was queued, and the workers that drained it. */
  fleet: fleetOutputSchema.nullable().default(null),
})
export type BackfillOutput = z.infer<typeof outputSchema>

const cursorSchema = z.object({
  /** Last key written per table; absent until its first batch. */
  after: z.record(z.string(), z.string().nullable()),
  written: z.record(z.string(), z.number().int()),
  failures: z.array(failureSchema),
  failedCount: z.record(z.string(), z.number().int()),
  estimate: estimateSchema.optional(),
  seconds: z.number(),
  /** Added without a new cursor format: an older cursor simply lacks them (nothing re-embedded yet). */
  foreign_after: z.record(z.string(), z.string().nullable()).optional(),
  reembedded: z.record(z.string(), z.number().int()).optional(),
  adopted: z.record(z.string(), z.number().int()).optional(),
  stages: stagesSchema.optional(),
  /** Keys per table whose rows the application held when their batch was written: come back to them. */
  busy: z.record(z.string(), z.array(z.string())).optional(),
  busy_queued: z.record(z.string(), z.number().int()).optional(),
  unknown_checks: z.record(z.string(), unknownCheckSchema).optional(),
  /** With backfill.mode queue: what was queued for the workers, from where. */
  fleet: fleetCursorSchema.optional(),
})
type Cursor = z.infer<typeof cursorSchema>
const cursorSpec: CursorSpec<Cursor> = { version: 1, schema: cursorSchema }

/** The provider answers, with vectors of each column's dimension, before anything is written. */
async function checkProvider(provider: EmbeddingProvider, targets: Target[]): Promise<void> {
  for (const t of targets) {
    const { dimensions } = t.requireVector()
    if (dimensions !== provider.dimensions) {
      throw new ProviderError(
        `${t.name}.${t.plan.embedding_column} is ${t.embeddingType} but the provider ${provider.name} (${provider.model}) gives ${provider.dimensions} dimensions`,
      )
    }
  }
  try {
    await provider.probe()
  } catch (error) {
    // Name the columns the answer would have been written to.
    const columns = targets.map((t) => `${t.name}.${t.plan.embedding_column} (${t.embeddingType})`).join(', ')
    throw new ProviderError(`${(error as Error).message}; nothing was written to ${columns}`)
  }
}

/** Tokens and price for all NULL rows and every stored vector not of this model, from the real tokenizer on samples, scaled. */
async function estimateCost(ctx: StepContext<Cursor>, targets: Target[]): Promise<BackfillOutput['estimate']> {
  const provider = ctx.embeddings()
  const total = { rows: 0, reembed: 0, tokens: 0, usd: 0, sampled: 0, tokenizer: '' }
  const add = (sample: TextRow[], rows: number, scale: number) => {
    const estimate = provider.estimateCost(sample.map((r) => r.text))
    total.rows += rows
    total.tokens += estimate.tokens * scale
    total.usd += estimate.usd * scale
    total.sampled += sample.length
    total.tokenizer = estimate.tokenizer
  }
  for (const t of targets) {
    const { rows: n, bytes } = await t.nullTextSize(ctx.db)
    if (n > 0) {
      const sample = await t.readNullPage(ctx.db, null, COST_SAMPLE_ROWS)
      add(sample, n, bytes / (sample.reduce((s, r) => s + Buffer.byteLength(r.text), 0) || 1))
    }
    // Stored vectors that are not this model's: at most all of them are embedded again.
    const withUnknown = ctx.plan.embedding.unknown_vectors === 'reembed'
    const meta = (await readSchemaVersion(ctx.db, ctx.runnerSchema)).version > 0 ? ctx.runnerSchema.meta : null
    const origin = await t.originCounts(ctx.db, meta, provider.model)
    const foreign = origin.other_model + (withUnknown ? origin.unknown : 0)
    if (foreign > 0) {
      const sample = await t.readForeignPage(ctx.db, meta, provider.model, null, COST_SAMPLE_ROWS, withUnknown ? 'true' : null)
      add(sample, foreign, foreign / (sample.length || 1))
      total.reembed += foreign
    }
  }
  return {
    rows: total.rows,
    reembed_rows: total.reembed,
    tokens: Math.round(total.tokens),
    usd: Number.isNaN(total.usd) ? null : total.usd,
    tokenizer: total.tokenizer,
    sampled_rows: total.sampled,
  }
}

/** The estimate in one phrase: rows, tokens and price, and how it was counted; nothing to embed said as such. */
function describeEstimate(e: BackfillOutput['estimate'], provider: string): string {
  if (e.rows === 0) return 'nothing to embed'
  const again = e.reembed_rows ? ` (${e.reembed_rows.toLocaleString('en-US')} of them to embed again)` : ''
  const price =
    provider === 'local' ? 'free (the local provider)' : e.usd === null ? 'price unknown for this model' : `$${e.usd.toFixed(4)}`
  return `${e.rows.toLocaleString('en-US')} rows${again}, ~${e.tokens.toLocaleString('en-US')} tokens counted in ${e.tokenizer} on a sample of ${e.sampled_rows.toLocaleString('en-US')} rows, ${price}`
}

/** Where the loop's time went, and which stage set the pace; null for an output from before it was measured. */
export function describeStages(stages: Stages | undefined, seconds: number): string | null {
  if (!stages || seconds <= 0) return null
  const part = (label: string, s: number) => `${label} ${s.toFixed(1)} s (${Math.round((100 * s) / seconds)}%)`
  const database = stages.saving + stages.writing + stages.reading
  const rest = Math.max(0, seconds - database - stages.embedding)
  const pace =
    stages.embedding >= database
      ? 'the provider set the pace: a faster provider (or a higher rate limit) would shorten it'
      : "the database set the pace: the provider waited on the database's writes"
  const parts = [
    part('waiting for the provider', stages.embedding),
    // (a free provider's batches are not saved)
    ...(stages.saving > 0 ? [part('saving each batch before the next is embedded', stages.saving)] : []),
    part("waiting for the previous batch's write", stages.writing),
    part('waiting for the next page', stages.reading),
    part('bookkeeping', rest),
  ]
  return `Of ${seconds.toFixed(1)} s: ${parts.join(', ')}; ${pace}.`
}

/** A page of rows to embed after a key: the NULL rows, or the rows whose vector is not this model's. */
type ReadPage = (after: string | null, limit: number) => Promise<TextRow[]>

/**
 * Embeds one table's rows page by page from the cursor of this phase. The two stages overlap:
 * while batch N is written (the database's work, on the server's core), batch N+1 is embedded
 * (the provider's, here or remote) and the page after it read, then batch N+1 is saved in the
 * runner's schema before anything else is asked of the provider; the cursor is saved once a
 * batch is written. A crash loses only the batch being embedded: saved ones are written by the
 * next run (writeLeftovers), and written ones are no longer read. A free provider's batches
 * skip the save: a crash then recomputes the batch being written too, at no cost.
 */
async function embedPages(
  ctx: StepContext<Cursor>,
  t: Target,
  cursor: Cursor,
  phase: 'after' | 'foreign_after',
  readPage: ReadPage,
  onBatch: (rows: number) => void,
  elapsed: () => number,
): Promise<number> {
  const provider = ctx.embeddings()
  const positions = (cursor[phase] ??= {})
  // A partition's position is its own: its keys are paged apart from its siblings'.
  const at = t.label
  let readFrom = positions[at] ?? null
  let writtenHere = 0
  let savedBatches = 0
  // A saved batch is written by its name: the vectors are in the staging table, and held here
  // past the write they would outlive the young generation and cost the garbage collector a copy each.
  const write = async (rows: TextRow[], failures: EmbedResult['failures'], batch: string | EmbeddedRow[]) => {
    const { written, busy } =
      typeof batch === 'string'
        ? await writeStagedBatch(ctx.db, ctx.runnerSchema, t, batch, ctx.writes)
        : await writeEmbeddings(ctx.db, ctx.runnerSchema, t, batch, provider.model, ctx.writes)
    if (busy.length) (cursor.busy ??= {})[t.name] = [...(cursor.busy[t.name] ?? []), ...busy]
    for (const f of failures) {
      if (cursor.failures.length < MAX_LISTED_FAILURES) cursor.failures.push({ table: t.name, key: rows[f.index]!.key, reason: f.reason })
    }
    positions[at] = rows.at(-1)!.key
    writtenHere += written.length
    countWritten(cursor, phase, t, written.length)
    cursor.failedCount[t.name] = (cursor.failedCount[t.name] ?? 0) + failures.length
    ctx.checkpoint.save({ ...cursor, seconds: elapsed() })
    onBatch(rows.length)
    batchWritten() // every few batches a full garbage collection: the peak memory stays flat whatever the table's size
    // Each written batch leaves its saved copy dead in the staging table's storage: reclaimed as it goes.
    if (typeof batch === 'string' && ++savedBatches % VACUUM_STAGING_EVERY === 0) await ctx.db.exec(`VACUUM ${ctx.runnerSchema.staging}`)
  }
  const stages = (cursor.stages ??= { reading: 0, embedding: 0, saving: 0, writing: 0 })
  const waitFor = async <T>(stage: keyof Stages, work: () => Promise<T>): Promise<T> => {
    const started = performance.now()
    try {
      return await work() // called here, so that a provider's work before its first await is timed too
    } finally {
      stages[stage] += (performance.now() - started) / 1000
    }
  }
  let writing: Promise<void> | undefined
  // Pages are keyed past the last one read, so the next can be read before this one is written.
  const read = (after: string | null) => {
    const page = readPage(after, ctx.plan.embedding.batch_size)
    page.catch(() => {}) // awaited by the loop, or dropped when it stops; a failure must not go unhandled meanwhile
    return page
  }
  let nextPage = read(readFrom)
  try {
    for (;;) {
      const rows = await waitFor('reading', () => nextPage)
      if (rows.length === 0) break
      readFrom = rows.at(-1)!.key
      nextPage = read(readFrom)
      const result = await waitFor('embedding', () => provider.embed(rows.map((r) => r.text)))
      const embedded = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
      // Saved before the provider is asked for the next, unless embedding it again would cost nothing.
      const batch =
        embedded.length && !provider.freeToRepeat
          ? await waitFor('saving', () => stageEmbeddings(ctx.db, ctx.runnerSchema, t, embedded, provider.model))
          : embedded
      await waitFor('writing', async () => writing) // one write in flight at a time: the cursor advances in order
      writing = write(rows, result.failures, batch)
      writing.catch(() => {}) // awaited below or in finally; a failure must not go unhandled meanwhile
      // On SIGINT the batches in flight finish, are written and checkpointed; the loop then stops.
      if (ctx.signal.aborted) break
    }
  } finally {
    await writing
    await nextPage.catch(() => {}) // its connection back in the pool before the step ends
  }
  if (ctx.signal.aborted) throw new Interrupted()
  return writtenHere
}

function countWritten(cursor: Cursor, phase: 'after' | 'foreign_after', t: Target, written: number): void {
  const counter = phase === 'after' ? cursor.written : (cursor.reembedded ??= {})
  counter[t.name] = (counter[t.name] ?? 0) + written
}

/** Batches an earlier run embedded and saved but did not write: written now, before anything is read or embedded. */
async function writeLeftovers(ctx: StepContext<Cursor>, t: Target, cursor: Cursor): Promise<void> {
  const { batches, written, busy } = await writeStaged(ctx.db, ctx.runnerSchema, t, ctx.writes)
  if (batches === 0) return
  if (busy.length) (cursor.busy ??= {})[t.name] = [...(cursor.busy[t.name] ?? []), ...busy]
  // Counted with the NULL rows: which phase saved them is not recorded, and nearly always it is that one.
  countWritten(cursor, 'after', t, written)
  ctx.checkpoint.save(cursor)
  ctx.log(`  ${t.name}: ${written} embeddings saved by the run that ended early written now, not embedded again`)
}

/** Rounds of coming back to rows the application held, before they are left to the workers. */
const BUSY_ROUNDS = 5

/**
 * Rows the application held when their batch was written were skipped, not waited for (a wait
 * in key order against the application's own order is how deadlocks happen). They are embedded
 * and written again a few times, after a pause each; any still held are queued for the workers.
 */
async function comeBackToBusyRows(ctx: StepContext<Cursor>, t: Target, cursor: Cursor): Promise<void> {
  const provider = ctx.embeddings()
  const busy = (cursor.busy ??= {})
  for (let round = 0; round < BUSY_ROUNDS && busy[t.name]?.length; round++) {
    await sleep(backoffMs(round, 200, 3000))
    const rows = (await t.readTexts(ctx.db, busy[t.name]!)).filter((r) => r.has_text)
    const result = rows.length ? await provider.embed(rows.map((r) => r.text)) : { vectors: [], failures: [] }
    const embedded = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
    const { written, busy: still } = await writeEmbeddings(ctx.db, ctx.runnerSchema, t, embedded, provider.model, ctx.writes)
    countWritten(cursor, 'after', t, written.length)
    busy[t.name] = still
    ctx.checkpoint.save(cursor)
  }
  const left = busy[t.name] ?? []
  if (left.length === 0) return
  await queueKeys(ctx.db, ctx.runnerSchema, t.name, left)
  ;(cursor.busy_queued ??= {})[t.name] = (cursor.busy_queued[t.name] ?? 0) + left.length
  busy[t.name] = []
  ctx.checkpoint.save(cursor)
  ctx.log(`  ${t.name}: ${left.length} row(s) the application kept locked through ${BUSY_ROUNDS} tries are queued for the workers`)
}

/**
 * Vectors of unknown origin compared with the model's, drawn at random from all of them: when
 * every one matches, at 95% confidence fewer than 3/60 = 5% of the set are another's (the rule
 * of three); a single mismatch and the whole set is embedded again.
 */
const UNKNOWN_SAMPLE = 60
/** A model that gives unit vectors never gives a norm further than this from 1. */
const UNIT_NORM_TOLERANCE = 0.01

/**
 * Vectors with no record of their model. Those no vector of this model could be (a zero vector,
 * a norm the model never gives) are embedded again; of the rest, a random sample is compared with
 * what this model gives for the same texts. When every one matches, the rest are recorded as this
 * model's (adopted); otherwise all of them are embedded again by the phase that follows.
 * Returns which unknown-origin rows that phase embeds again, as a condition on `t`.
 */
async function adoptUnknownOrigin(
  ctx: StepContext<Cursor>,
  t: Target,
): Promise<{ adopted: number; reembed: string | null; check: UnknownCheck | null }> {
  const provider = ctx.embeddings()
  const meta = ctx.runnerSchema.meta
  // What a norm this model gives looks like, from one text of the table.
  const [probe] = await t.sampleUnknownOrigin(ctx.db, meta, 1)
  if (!probe) return { adopted: 0, reembed: null, check: null }
  const unit = await unitNorms(provider, [probe.text])
  const norm = `vector_norm(t.${t.embedding}::vector)`
  const implausible = unit ? `abs(${norm} - 1) > ${UNIT_NORM_TOLERANCE}` : `${norm} = 0`
  const counted = await t.countUnknownOrigin(ctx.db, meta, implausible)
  const sample = await t.sampleUnknownOrigin(ctx.db, meta, UNKNOWN_SAMPLE, `NOT (${implausible})`)
  const fresh = sample.length ? await provider.embed(sample.map((r) => r.text)) : { vectors: [] }
  const matched =
    sample.length > 0 &&
    sample.every((r, i) => fresh.vectors[i] && cosine(JSON.parse(r.vector) as number[], fresh.vectors[i]!) >= SAME_MODEL_COSINE)
  const plausible = counted.unknown - counted.implausible
  const check: UnknownCheck = {
    ...counted,
    sampled: sample.length,
    matched,
    bound: sample.length >= plausible ? 0 : Math.min(1, 3 / sample.length),
  }
  const of = `a random sample of ${sample.length} of ${plausible.toLocaleString('en-US')}`
  const zeroes = counted.implausible
    ? `; ${counted.implausible} are ${unit ? 'zero or not of unit norm' : 'zero vectors'}, which ${provider.model} never gives, and are embedded again`
    : ''
  if (!matched) {
    ctx.log(
      `  ${t.name}: stored vectors of unknown origin do not match ${provider.model} on ${of}: all of them are embedded again${zeroes}`,
    )
    return { adopted: 0, reembed: 'true', check }
  }
  const { rows } = await ctx.db.query<{ n: number }>(
    `WITH adopted AS (
       INSERT INTO ${meta} (table_name, row_key, content_hash, model)
       SELECT $1, ${t.keyText('t')}, ${t.hash('t')}, $2 FROM ${t.table} t
       WHERE t.${t.embedding} IS NOT NULL AND ${t.ofDimensions('t')} AND NOT (${implausible})
         AND NOT EXISTS (SELECT 1 FROM ${meta} m WHERE m.table_name = $1 AND m.row_key = ${t.keyText('t')})
       ON CONFLICT DO NOTHING RETURNING 1
     ) SELECT count(*)::int AS n FROM adopted`,
    [t.name, provider.model],
  )
  const bound = check.bound ? ` (at 95% confidence fewer than ${(100 * check.bound).toFixed(1)}% of them are another model's)` : ''
  ctx.log(
    `  ${t.name}: ${rows[0]!.n} stored vectors of unknown origin match ${provider.model} on ${of}${bound}: recorded as its own${zeroes}`,
  )
  return { adopted: rows[0]!.n, reembed: counted.implausible ? implausible : null, check }
}

/** Whether the model gives unit vectors (as OpenAI's and the local provider do). */
async function unitNorms(provider: EmbeddingProvider, texts: string[]): Promise<boolean> {
  const { vectors } = await provider.embed(texts)
  return vectors.every((v) => v && Math.abs(Math.hypot(...v) - 1) <= UNIT_NORM_TOLERANCE / 10)
}

export function describeUnknownCheck(table: string, c: UnknownCheck): string {
  const judged = c.matched
    ? `every one of a random sample of ${c.sampled} matched the model, so the rest were recorded as its own${c.bound ? ` (at 95% confidence fewer than ${(100 * c.bound).toFixed(1)}% of them are another model's)` : ' (every one was compared)'}`
    : `a random sample of ${c.sampled} did not all match the model, so all of them were embedded again`
  return `${table}: ${c.unknown.toLocaleString('en-US')} stored vectors had no record of their model; ${c.implausible} were zero or of a norm the model never gives (embedded again); ${judged}.`
}

/** Binds each column to this run's model; with --change-model, a column bound to another is bound to this one (its rows are embedded again). */
async function bindModels(ctx: StepContext<Cursor>, targets: Target[], provider: EmbeddingProvider): Promise<void> {
  const others = await bindColumnModels(ctx.db, ctx.runnerSchema, targets, provider)
  if (others.length === 0) return
  const describe = others.map((m) => `${m.table_name}.${m.column_name} holds embeddings of ${m.provider} ${m.model}`).join('; ')
  if (!ctx.plan.embedding.change_model) throw new TargetError(`${describe}; this backfill would write ${provider.name} ${provider.model}`)
  for (const m of others) {
    const t = targets.find((x) => x.name === m.table_name && x.plan.embedding_column === m.column_name)!
    await rebindColumnModel(ctx.db, ctx.runnerSchema, t, provider)
    ctx.log(
      `  ${t.name}.${m.column_name}: model changed from ${m.provider} ${m.model} to ${provider.name} ${provider.model} (--change-model); its rows are embedded again`,
    )
  }
}

export const backfillStep: Step<BackfillOutput, Cursor> = {
  name: 'backfill',
  output: outputSchema,
  cursor: cursorSpec,

  async run(ctx) {
    const { db, log, targets, plan } = ctx
    // Installed by the pipeline batch as a rule; here only what is missing (nothing is reinstalled).
    const beforeTriggers = requireCaptureForRoles(db, ctx.runnerSchema, plan, log, [])
    await installPipeline(db, ctx.runnerSchema, targets, { locks: lockPolicy(plan), log, beforeTriggers })
    const provider = ctx.embeddings()
    await checkProvider(provider, targets)
    await bindModels(ctx, targets, provider)

    const cursor: Cursor = ctx.checkpoint.load() ?? { after: {}, written: {}, failures: [], failedCount: {}, seconds: 0 }
    for (const t of targets) await writeLeftovers(ctx, t, cursor)
    if (!cursor.estimate) {
      cursor.estimate = await estimateCost(ctx, targets)
      ctx.checkpoint.save(cursor)
    }
    const { estimate } = cursor
    log(`  cost estimate: ${describeEstimate(estimate, provider.name)}`)
    ctx.writeArtifact('cost-estimate.json', `${JSON.stringify(estimate, null, 2)}\n`)
    if (plan.embedding.budget_usd !== undefined && estimate.usd !== null && estimate.usd > plan.embedding.budget_usd) {
      throw new WorkError(
        `the backfill would cost about $${estimate.usd.toFixed(2)}, above embedding.budget_usd ($${plan.embedding.budget_usd}); raise the budget in the plan to go on`,
      )
    }

    // With backfill.mode queue, the NULL rows go to the workers; what is left for this process is the vectors not of this model.
    const fleetMode = plan.backfill.mode === 'queue'
    if (fleetMode) {
      cursor.fleet ??= {
        since: (await db.query<{ now: string }>('SELECT now()::text AS now')).rows[0]!.now,
        after: {},
        queued: {},
        workers: [],
        waited_seconds: 0,
      }
      await backfillThroughFleet(ctx, cursor.fleet, () => ctx.checkpoint.save(cursor))
    }
    const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)
    let done = sum(cursor.written) + sum(cursor.failedCount)
    // (With the fleet, this process's own progress is shown only when it has vectors to embed again.)
    const task =
      fleetMode && estimate.reembed_rows === 0
        ? { update: () => {}, finish: () => {} }
        : ctx.progress.start('backfill', Math.max(fleetMode ? estimate.reembed_rows : estimate.rows, done))
    const started = performance.now()
    const elapsed = () => cursor.seconds + (performance.now() - started) / 1000
    const onBatch = (t: Target) => (rows: number) => task.update((done += rows), t.label)
    for (const t of targets) {
      // A partitioned table is backfilled partition by partition: each page read and written where its rows are.
      const { partitioned, partitions } = await readPartitions(db, t.table)
      const leaves = partitioned ? partitions.filter((p) => p.leaf).map((p) => t.partition(p.relation)) : [t]
      for (const leaf of fleetMode ? [] : leaves)
        await embedPages(ctx, leaf, cursor, 'after', (after, limit) => leaf.readNullPage(db, after, limit), onBatch(leaf), elapsed)
      await comeBackToBusyRows(ctx, t, cursor)
      // Vectors that are not this model's: another model's after --change-model, and those of unknown origin unless kept or adopted.
      const unknown =
        plan.embedding.unknown_vectors === 'reembed' ? await adoptUnknownOrigin(ctx, t) : { adopted: 0, reembed: null, check: null }
      if (unknown.adopted) (cursor.adopted ??= {})[t.name] = (cursor.adopted[t.name] ?? 0) + unknown.adopted
      if (unknown.check) (cursor.unknown_checks ??= {})[t.name] = unknown.check
      const readForeign: ReadPage = (after, limit) =>
        t.readForeignPage(db, ctx.runnerSchema.meta, provider.model, after, limit, unknown.reembed)
      await embedPages(ctx, t, cursor, 'foreign_after', readForeign, onBatch(t), elapsed)
      await comeBackToBusyRows(ctx, t, cursor)
    }
    const seconds = elapsed() + (cursor.fleet?.waited_seconds ?? 0)
    task.finish()
    const fleet = cursor.fleet ? await countFleetWork(ctx, targets, cursor.fleet.since, MAX_LISTED_FAILURES) : null
    // Production's autovacuum analyzes a freshly written table within minutes, and the planner's
    // choice between the index and a scan turns on those statistics: taken now, so that what
    // validate measures is what the application will get (SHARE UPDATE EXCLUSIVE: no query waits).
    for (const t of targets) await db.exec(`ANALYZE ${t.table}`)
    const tables = []
    for (const t of targets) {
      const { nulls, no_text } = await t.counts(db)
      tables.push({
        table: t.name,
        written: (cursor.written[t.name] ?? 0) + (fleet?.written[t.name] ?? 0),
        reembedded: cursor.reembedded?.[t.name] ?? 0,
        adopted: cursor.adopted?.[t.name] ?? 0,
        failed: (cursor.failedCount[t.name] ?? 0) + (fleet?.failed[t.name] ?? 0),
        remaining_null: nulls - no_text,
        no_text,
        busy_queued: cursor.busy_queued?.[t.name] ?? 0,
        unknown_check: cursor.unknown_checks?.[t.name] ?? null,
      })
    }
    const fleetOutput = cursor.fleet
      ? {
          queued: sum(cursor.fleet.queued),
          workers: cursor.fleet.workers,
          waited_seconds: cursor.fleet.waited_seconds,
        }
      : null
    return {
      provider: provider.name,
      model: provider.model,
      estimate,
      tables,
      failures: [...cursor.failures, ...(fleet?.failures ?? [])].slice(0, MAX_LISTED_FAILURES),
      seconds,
      stages: cursor.stages,
      mode: plan.backfill.mode,
      fleet: fleetOutput,
    }
  },

  async preview(ctx) {
    const provider = ctx.embeddings()
    const estimate = await estimateCost(ctx, ctx.targets)
    const lines = [
      `embeds with ${provider.name} ${provider.model} (${provider.dimensions} dimensions), ${ctx.plan.embedding.batch_size} texts a request, ${ctx.writes.suppressTriggers ? "the application's triggers kept quiet (session_replication_role = replica)" : "the application's triggers firing"}`,
      `cost estimate: ${describeEstimate(estimate, provider.name)}`,
    ]
    for (const t of ctx.targets) {
      const { rows, nulls } = await t.counts(ctx.db)
      lines.push(`${t.name}.${t.plan.embedding_column}: ${nulls.toLocaleString('en-US')} of ${rows.toLocaleString('en-US')} rows NULL`)
    }
    return lines
  },

  summarize(o) {
    const written = o.tables.reduce((s, t) => s + t.written, 0)
    const remaining = o.tables.reduce((s, t) => s + t.remaining_null, 0)
    const failed = o.tables.reduce((s, t) => s + t.failed, 0)
    const noText = o.tables.reduce((s, t) => s + t.no_text, 0)
    const by = o.fleet ? ` by ${o.fleet.workers.length} worker(s) from the queue` : ''
    return `${written.toLocaleString('en-US')} embeddings written with ${o.model}${by} in ${o.seconds.toFixed(1)} s; ${failed} rows failed; ${remaining} rows remain NULL${noText ? `; ${noText} rows have no text to embed (left NULL)` : ''}`
  },

  details: (o) =>
    [
      '## Backfill',
      '',
      `Provider ${o.provider}, model ${o.model}. Estimated before the start: ${describeEstimate(o.estimate, o.provider)}.`,
      '',
      // With the fleet, the seconds are the wait for the workers: no stage of this process's set the pace.
      ...[o.fleet ? describeFleet(o.fleet) : describeStages(o.stages, o.seconds)]
        .filter((line) => line !== null)
        .flatMap((line) => [line, '']),
      "| table | NULL rows embedded | vectors not of this model, embedded again | unknown-origin vectors proved this model's | rows failed | rows still NULL | no text to embed (left NULL) | held by the application, queued for the workers |",
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...o.tables.map(
        (t) =>
          `| ${t.table} | ${t.written.toLocaleString('en-US')} | ${t.reembedded.toLocaleString('en-US')} | ${t.adopted.toLocaleString('en-US')} | ${t.failed} | ${t.remaining_null} | ${t.no_text} | ${t.busy_queued} |`,
      ),
      '',
      ...o.tables.flatMap((t) => (t.unknown_check ? [describeUnknownCheck(t.table, t.unknown_check), ''] : [])),
      ...(o.failures.length ? ['## Failed rows', '', ...o.failures.map((f) => `- ${f.table} key ${f.key}: ${f.reason}`), ''] : []),
    ].join('\n'),
}
