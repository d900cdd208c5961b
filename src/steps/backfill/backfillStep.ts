import { z } from 'zod'
import type { CursorSpec } from '../../checkpoint/session.ts'
import type { Target } from '../../db/target.ts'
import type { EmbeddingProvider } from '../../embeddings/provider.ts'
import { Interrupted, ProviderError, WorkError } from '../../errors.ts'
import { installPipeline } from '../../pipeline/installPipeline.ts'
import { writeEmbeddings } from '../../pipeline/writeEmbeddings.ts'
import type { Step, StepContext } from '../step.ts'

// Batch 3b of the seed: backfill the NULL embeddings. The capture is installed first, so
// nothing written during the backfill is missed. Pages through NULL rows by key (never
// OFFSET), embeds a batch, writes it in one statement, and saves its cursor after each batch:
// a resume after a crash redoes at most the batch in flight.

const MAX_LISTED_FAILURES = 100
const COST_SAMPLE_ROWS = 1000

const estimateSchema = z.object({
  rows: z.number().int(),
  tokens: z.number(),
  usd: z.number().nullable(),
  tokenizer: z.string(),
  sampled_rows: z.number().int(),
})
const failureSchema = z.object({ table: z.string(), key: z.string(), reason: z.string() })

const outputSchema = z.object({
  provider: z.string(),
  model: z.string(),
  estimate: estimateSchema,
  tables: z.array(z.object({ table: z.string(), written: z.number().int(), failed: z.number().int(), remaining_null: z.number().int() })),
  failures: z.array(failureSchema),
  seconds: z.number(),
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

/** Tokens and price for all NULL rows, from the real tokenizer on a sample scaled by text size. */
async function estimateCost(ctx: StepContext<Cursor>, targets: Target[]): Promise<BackfillOutput['estimate']> {
  const provider = ctx.embeddings()
  const total = { rows: 0, tokens: 0, usd: 0, sampled: 0, tokenizer: '' }
  for (const t of targets) {
    const { rows: n, bytes } = await t.nullTextSize(ctx.db)
    if (n === 0) continue
    const sample = await t.readNullPage(ctx.db, null, COST_SAMPLE_ROWS)
    const estimate = provider.estimateCost(sample.map((r) => r.text))
    const scale = bytes / (sample.reduce((s, r) => s + Buffer.byteLength(r.text), 0) || 1)
    total.rows += n
    total.tokens += estimate.tokens * scale
    total.usd += estimate.usd * scale
    total.sampled += sample.length
    total.tokenizer = estimate.tokenizer
  }
  return {
    rows: total.rows,
    tokens: Math.round(total.tokens),
    usd: Number.isNaN(total.usd) ? null : total.usd,
    tokenizer: total.tokenizer,
    sampled_rows: total.sampled,
  }
}

/** Embeds one table's NULL rows page by page from the cursor, saving it after every batch. */
async function backfillTable(
  ctx: StepContext<Cursor>,
  t: Target,
  cursor: Cursor,
  onBatch: (rows: number) => void,
  elapsed: () => number,
): Promise<void> {
  const provider = ctx.embeddings()
  for (;;) {
    const rows = await t.readNullPage(ctx.db, cursor.after[t.name] ?? null, ctx.plan.embedding.batch_size)
    if (rows.length === 0) return
    // The batch in flight finishes on SIGINT, is written and checkpointed; the loop then stops.
    const result = await provider.embed(rows.map((r) => r.text))
    const embedded = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
    const written = await writeEmbeddings(ctx.db, ctx.runnerSchema, t, embedded, provider.model)
    for (const f of result.failures) {
      if (cursor.failures.length < MAX_LISTED_FAILURES) cursor.failures.push({ table: t.name, key: rows[f.index]!.key, reason: f.reason })
    }
    cursor.after[t.name] = rows.at(-1)!.key
    cursor.written[t.name] = (cursor.written[t.name] ?? 0) + written.length
    cursor.failedCount[t.name] = (cursor.failedCount[t.name] ?? 0) + result.failures.length
    ctx.checkpoint.save({ ...cursor, seconds: elapsed() })
    onBatch(rows.length)
    if (ctx.signal.aborted) throw new Interrupted()
  }
}

export const backfillStep: Step<BackfillOutput, Cursor> = {
  name: 'backfill',
  output: outputSchema,
  cursor: cursorSpec,

  async run(ctx) {
    const { db, log, targets, plan } = ctx
    await installPipeline(db, ctx.runnerSchema, targets)
    const provider = ctx.embeddings()
    await checkProvider(provider, targets)

    const cursor: Cursor = ctx.checkpoint.load() ?? { after: {}, written: {}, failures: [], failedCount: {}, seconds: 0 }
    if (!cursor.estimate) {
      cursor.estimate = await estimateCost(ctx, targets)
      ctx.checkpoint.save(cursor)
    }
    const { estimate } = cursor
    log(
      `  cost estimate: ${estimate.rows.toLocaleString('en-US')} rows, ~${estimate.tokens.toLocaleString('en-US')} tokens, ${estimate.usd === null ? 'price unknown for this model' : `$${estimate.usd.toFixed(4)}`} (${estimate.tokenizer}; sampled ${estimate.sampled_rows} rows)`,
    )
    ctx.writeArtifact('cost-estimate.json', `${JSON.stringify(estimate, null, 2)}\n`)
    if (plan.embedding.budget_usd !== undefined && estimate.usd !== null && estimate.usd > plan.embedding.budget_usd) {
      throw new WorkError(
        `the backfill would cost about $${estimate.usd.toFixed(2)}, above embedding.budget_usd ($${plan.embedding.budget_usd}); raise the budget in the plan to go on`,
      )
    }

    const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)
    let done = sum(cursor.written) + sum(cursor.failedCount)
    const task = ctx.progress.start('backfill', Math.max(estimate.rows, done))
    const started = performance.now()
    const elapsed = () => cursor.seconds + (performance.now() - started) / 1000
    for (const t of targets) {
      await backfillTable(ctx, t, cursor, (rows) => task.update((done += rows), t.name), elapsed)
    }
    const seconds = elapsed()
    task.finish()
    const tables = []
    for (const t of targets) {
      const { nulls } = await t.counts(db)
      tables.push({ table: t.name, written: cursor.written[t.name] ?? 0, failed: cursor.failedCount[t.name] ?? 0, remaining_null: nulls })
    }
    return { provider: provider.name, model: provider.model, estimate, tables, failures: cursor.failures, seconds }
  },

  summarize(o) {
    const written = o.tables.reduce((s, t) => s + t.written, 0)
    const remaining = o.tables.reduce((s, t) => s + t.remaining_null, 0)
    const failed = o.tables.reduce((s, t) => s + t.failed, 0)
    return `${written.toLocaleString('en-US')} embeddings written with ${o.model} in ${o.seconds.toFixed(1)} s; ${failed} rows failed; ${remaining} rows remain NULL`
  },

  details: (o) =>
    [
      '## Backfill',
      '',
      `Provider ${o.provider}, model ${o.model}. Estimated before the start: ${o.estimate.rows.toLocaleString('en-US')} rows, ~${o.estimate.tokens.toLocaleString('en-US')} tokens, ${o.estimate.usd === null ? 'price unknown' : `$${o.estimate.usd.toFixed(4)}`} (${o.estimate.tokenizer}).`,
      '',
      '| table | embeddings written | rows failed | rows still NULL |',
      '| --- | --- | --- | --- |',
      ...o.tables.map((t) => `| ${t.table} | ${t.written.toLocaleString('en-US')} | ${t.failed} | ${t.remaining_null} |`),
      '',
      ...(o.failures.length ? ['## Failed rows', '', ...o.failures.map((f) => `- ${f.table} key ${f.key}: ${f.reason}`), ''] : []),
    ].join('\n'),
}
