import { z } from 'zod'
import { Interrupted, WorkError } from '../../errors.ts'
import { installPipeline } from '../../pipeline/installPipeline.ts'
import { resolveTargets, type ResolvedTarget } from '../../pipeline/resolveTargets.ts'
import { writeEmbeddings } from '../../pipeline/writeEmbeddings.ts'
import type { Queryable } from '../../db/database.ts'
import type { Step, StepContext } from '../step.ts'

// Batch 3b of the seed: backfill the NULL embeddings. The capture is installed first, so
// nothing written during the backfill is missed. Pages through NULL rows by key (never
// OFFSET), embeds a batch, writes it in one statement, and saves its cursor after each batch:
// a resume after a crash redoes at most the batch in flight.

const MAX_LISTED_FAILURES = 100
const COST_SAMPLE_ROWS = 1000

const outputSchema = z.object({
  provider: z.string(),
  model: z.string(),
  estimate: z.object({
    rows: z.number().int(),
    tokens: z.number(),
    usd: z.number().nullable(),
    tokenizer: z.string(),
    sampled_rows: z.number().int(),
  }),
  tables: z.array(z.object({ table: z.string(), written: z.number().int(), failed: z.number().int(), remaining_null: z.number().int() })),
  failures: z.array(z.object({ table: z.string(), key: z.string(), reason: z.string() })),
  seconds: z.number(),
})
export type BackfillOutput = z.infer<typeof outputSchema>

interface Cursor {
  /** Last key written per table; null until the first batch. */
  after: Record<string, string | null>
  written: Record<string, number>
  failures: BackfillOutput['failures']
  failedCount: Record<string, number>
  estimate?: BackfillOutput['estimate']
  seconds: number
}

async function countNull(db: Queryable, t: ResolvedTarget): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.table} WHERE ${t.embedding} IS NULL`)
  return rows[0]!.n
}

/** Tokens and price for all NULL rows, from the real tokenizer on a sample scaled by text size. */
async function estimateCost(ctx: StepContext, targets: ResolvedTarget[]): Promise<BackfillOutput['estimate']> {
  const provider = ctx.embeddings()
  let rows = 0
  let tokens = 0
  let usd = 0
  let sampled = 0
  let tokenizer = ''
  for (const t of targets) {
    const { rows: size } = await ctx.db.query<{ n: number; bytes: number }>(
      `SELECT count(*)::int AS n, coalesce(sum(octet_length(${t.text()})), 0)::float8 AS bytes FROM ${t.table} WHERE ${t.embedding} IS NULL`,
    )
    const { n, bytes } = size[0]!
    if (n === 0) continue
    const { rows: sample } = await ctx.db.query<{ text: string }>(
      `SELECT ${t.text()} AS text FROM ${t.table} WHERE ${t.embedding} IS NULL LIMIT ${COST_SAMPLE_ROWS}`,
    )
    const estimate = provider.estimateCost(sample.map((r) => r.text))
    const sampleBytes = sample.reduce((s, r) => s + Buffer.byteLength(r.text), 0) || 1
    const scale = bytes / sampleBytes
    rows += n
    tokens += estimate.tokens * scale
    usd += estimate.usd * scale
    sampled += sample.length
    tokenizer = estimate.tokenizer
  }
  return { rows, tokens: Math.round(tokens), usd: Number.isNaN(usd) ? null : usd, tokenizer, sampled_rows: sampled }
}

export const backfillStep: Step<BackfillOutput> = {
  name: 'backfill',
  output: outputSchema,

  async run(ctx) {
    const { db, plan, log, signal } = ctx
    await installPipeline(db, plan)
    const targets = await resolveTargets(db, plan)
    const provider = ctx.embeddings()
    for (const t of targets) {
      if (t.dimensions !== provider.dimensions) {
        throw new WorkError(
          `${t.name}.${t.plan.embedding_column} is ${t.embeddingType} but the provider ${provider.name} (${provider.model}) gives ${provider.dimensions} dimensions`,
        )
      }
    }
    try {
      await provider.probe()
    } catch (error) {
      // Name the columns the answer would have been written to.
      const columns = targets.map((t) => `${t.name}.${t.plan.embedding_column} (${t.embeddingType})`).join(', ')
      throw new WorkError(`${(error as Error).message}; nothing was written to ${columns}`)
    }

    const cursor: Cursor = ctx.checkpoint.load<Cursor>() ?? { after: {}, written: {}, failures: [], failedCount: {}, seconds: 0 }
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

    const total = estimate.rows
    const alreadyDone =
      Object.values(cursor.written).reduce((a, b) => a + b, 0) + Object.values(cursor.failedCount).reduce((a, b) => a + b, 0)
    const task = ctx.progress.start('backfill', Math.max(total, alreadyDone))
    let done = alreadyDone
    const started = performance.now()
    const batchSize = plan.embedding.batch_size
    for (const t of targets) {
      for (;;) {
        const after = cursor.after[t.name] ?? null
        const { rows } = await db.query<{ key: string; text: string; hash: string }>(
          `SELECT ${t.key}::text AS key, ${t.text()} AS text, ${t.hash()} AS hash FROM ${t.table}
           WHERE ${t.embedding} IS NULL ${after === null ? '' : `AND ${t.key} > $2::${t.keyType}`}
           ORDER BY ${t.key} LIMIT $1`,
          after === null ? [batchSize] : [batchSize, after],
        )
        if (rows.length === 0) break
        // The batch in flight finishes on SIGINT, is written and checkpointed; the loop then stops.
        const result = await provider.embed(rows.map((r) => r.text))
        const embedded = rows.flatMap((r, i) => (result.vectors[i] ? [{ key: r.key, hash: r.hash, vector: result.vectors[i]! }] : []))
        const written = await writeEmbeddings(db, plan.target.runner_schema, t, embedded, provider.model)
        for (const f of result.failures) {
          if (cursor.failures.length < MAX_LISTED_FAILURES)
            cursor.failures.push({ table: t.name, key: rows[f.index]!.key, reason: f.reason })
        }
        cursor.after[t.name] = rows.at(-1)!.key
        cursor.written[t.name] = (cursor.written[t.name] ?? 0) + written.length
        cursor.failedCount[t.name] = (cursor.failedCount[t.name] ?? 0) + result.failures.length
        ctx.checkpoint.save({ ...cursor, seconds: cursor.seconds + (performance.now() - started) / 1000 })
        done += rows.length
        task.update(done, t.name)
        if (signal.aborted) throw new Interrupted()
      }
    }
    const seconds = cursor.seconds + (performance.now() - started) / 1000
    task.finish()
    const tables = []
    for (const t of targets) {
      tables.push({
        table: t.name,
        written: cursor.written[t.name] ?? 0,
        failed: cursor.failedCount[t.name] ?? 0,
        remaining_null: await countNull(db, t),
      })
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
