import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { writeBatchReport } from '../agents/writeBatchReport.ts'
import type { CriterionResult, Session } from '../checkpoint/session.ts'
import type { Database } from '../db/database.ts'
import { isTransientDatabaseError } from '../db/isTransientError.ts'
import { createProvider } from '../embeddings/createProvider.ts'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import { errorMessage, Interrupted, UsageError } from '../errors.ts'
import { dependenciesOf, orderBatches } from '../plan/orderBatches.ts'
import type { Batch, Plan, StepName } from '../plan/schema.ts'
import { writeHtmlReport } from '../report/writeHtmlReport.ts'
import { writeSummary } from '../report/writeSummary.ts'
import type { StepContext, StepRegistry } from '../steps/step.ts'
import { countEmbeddings, embeddingChanges, readOnlyView } from './guards.ts'
import type { Progress } from './progress.ts'

export interface RunOptions {
  session: Session
  plan: Plan
  registry: StepRegistry
  db: Database
  progress: Progress
  signal: AbortSignal
  log(message: string): void
  /** --provider on the command line: overrides the plan's embedding.provider. */
  providerOverride?: 'local' | 'openai'
  withWorker?: boolean
}

export interface RunResult {
  status: 'completed' | 'failed'
  criteria: CriterionResult[]
  exitCode: 0 | 1
}

/** Refuses, before anything touches a database, a plan that names a step this build does not have. */
export function checkStepsRegistered(plan: Plan, registry: StepRegistry): void {
  const missing = plan.batches.filter((b) => !registry.has(b.step))
  if (missing.length > 0) {
    throw new UsageError(
      `this runner has no implementation of step ${missing.map((b) => `"${b.step}" (batch ${b.id})`).join(', ')}; ` +
        `it implements: ${[...registry.keys()].join(', ')}`,
    )
  }
}

/**
 * Runs every batch of the session that is not completed yet, in dependency order. Completed
 * batches are never re-run: their saved outputs are read back and handed on. A batch that was
 * running or failed runs again, with the cursor it saved.
 */
export async function runSession(options: RunOptions): Promise<RunResult> {
  const { session, plan, registry, log } = options
  checkStepsRegistered(plan, registry)
  const outputs = new Map<string, unknown>()

  for (const batch of orderBatches(plan.batches)) {
    const step = registry.get(batch.step)!
    const state = session.batch(batch.id)
    if (state.status === 'completed' && state.output_path) {
      outputs.set(batch.id, step.output.parse(JSON.parse(session.readArtifact(state.output_path))))
      log(`batch ${batch.id}: completed earlier, skipped`)
      continue
    }
    if (options.signal.aborted) throw await interrupt(session, batch.id)

    const inputs: Partial<Record<StepName, unknown>> = {}
    for (const dep of dependenciesOf(batch, plan.batches)) inputs[dep.step] = outputs.get(dep.id)

    const startedAt = new Date().toISOString()
    session.updateBatch(batch.id, {
      status: 'running',
      attempts: state.attempts + 1,
      started_at: startedAt,
      ended_at: undefined,
      error: undefined,
    })
    session.event('batch_started', {
      batch: batch.id,
      step: batch.step,
      attempt: state.attempts,
      resumed_from: session.cursor(batch.id) ?? null,
    })
    log(
      `batch ${batch.id} (${batch.step}, ${batch.agent}): started${session.cursor(batch.id) !== undefined ? ', continuing from its checkpoint' : ''}`,
    )

    try {
      const output = await runBatchRetryingTransient(options, batch, inputs)
      const endedAt = new Date().toISOString()
      const dir = session.batchDir(batch.id)
      const summary = step.summarize(output)
      const outputPath = session.writeArtifact(join(dir, 'output.json'), `${JSON.stringify(output, null, 2)}\n`)
      const report = await writeBatchReport(
        { batch, summary, details: step.details(output), startedAt, endedAt },
        plan.agents.model,
        process.env,
        log,
      )
      const reportPath = session.writeArtifact(join(dir, 'report.md'), report)
      outputs.set(batch.id, output)
      session.updateBatch(batch.id, { status: 'completed', ended_at: endedAt, summary, output_path: outputPath, report_path: reportPath })
      session.event('batch_completed', { batch: batch.id, summary })
      log(`batch ${batch.id}: completed: ${summary}`)
    } catch (error) {
      if (error instanceof Interrupted) throw await interrupt(session, batch.id)
      const message = errorMessage(error)
      session.updateBatch(batch.id, { status: 'failed', ended_at: new Date().toISOString(), error: message })
      session.event('batch_failed', { batch: batch.id, error: message })
      log(`batch ${batch.id}: failed: ${message}`)
      return finish(options, outputs, 'failed')
    }
  }
  return finish(options, outputs, 'completed')
}

const MAX_TRANSIENT_RETRIES = 5

/**
 * A dropped connection or a restarting server should not end the run: the batch runs again
 * from its checkpoint after a capped, jittered backoff (1, 2, 4, 8, 16 s at most).
 */
async function runBatchRetryingTransient(options: RunOptions, batch: Batch, inputs: StepContext['inputs']): Promise<unknown> {
  for (let retry = 0; ; retry++) {
    try {
      return await runBatch(options, batch, inputs)
    } catch (error) {
      if (!isTransientDatabaseError(error) || retry >= MAX_TRANSIENT_RETRIES || options.signal.aborted) throw error
      const waitMs = Math.round((0.5 + Math.random() / 2) * Math.min(16_000, 1000 * 2 ** retry))
      options.log(
        `batch ${batch.id}: transient database error (${errorMessage(error)}); running it again from its checkpoint in ${(waitMs / 1000).toFixed(1)} s (retry ${retry + 1} of ${MAX_TRANSIENT_RETRIES})`,
      )
      options.session.event('batch_retry', { batch: batch.id, error: errorMessage(error), retry: retry + 1 })
      await sleep(waitMs)
    }
  }
}

async function runBatch(options: RunOptions, batch: Batch, inputs: StepContext['inputs']): Promise<unknown> {
  const { session, plan, registry, db } = options
  const step = registry.get(batch.step)!
  let provider: EmbeddingProvider | undefined
  const context = (handle: Database): StepContext => ({
    plan,
    batch,
    db: handle,
    inputs,
    progress: options.progress,
    signal: options.signal,
    log: options.log,
    checkpoint: {
      load: <T>() => session.cursor<T>(batch.id),
      save: (cursor) => session.saveCursor(batch.id, cursor),
    },
    writeArtifact: (name, content) => session.writeArtifact(join(session.batchDir(batch.id), name), content),
    withWorker: options.withWorker ?? false,
    embeddings: () => (provider ??= createProvider(plan, db.kind, options.log, process.env, options.providerOverride)),
  })

  const before = batch.guards.writes_embeddings ? undefined : await countEmbeddings(db, plan)
  const raw = batch.guards.read_only
    ? await db.transaction((tx) => step.run(context(readOnlyView(tx, db))), { readOnly: true })
    : await step.run(context(db))
  const parsed = step.output.safeParse(raw)
  if (!parsed.success) throw new Error(`step ${batch.step} returned an output that does not match its schema: ${parsed.error.message}`)
  if (before) {
    const changes = embeddingChanges(before, await countEmbeddings(db, plan))
    if (changes) throw new Error(`guard violated: batch ${batch.id} may not write embeddings, but ${changes}`)
  }
  return parsed.data
}

async function interrupt(session: Session, batchId: string): Promise<Interrupted> {
  session.updateBatch(batchId, { status: 'interrupted', ended_at: new Date().toISOString(), error: 'interrupted' })
  session.state.status = 'interrupted'
  session.saveState()
  session.event('interrupted', { batch: batchId })
  return new Interrupted()
}

function finish(options: RunOptions, outputs: Map<string, unknown>, status: 'completed' | 'failed'): RunResult {
  const { session, plan, registry } = options
  const criteria: CriterionResult[] = []
  for (const batch of plan.batches) {
    const step = registry.get(batch.step)!
    const output = outputs.get(batch.id)
    if (output !== undefined && step.criteria) criteria.push(...step.criteria(output))
  }
  session.state.status = status
  session.state.criteria = criteria
  session.saveState()
  writeSummary(session, plan)
  const byStep = new Map(plan.batches.flatMap((b) => (outputs.has(b.id) ? [[b.step, outputs.get(b.id)] as const] : [])))
  writeHtmlReport(session, plan, byStep)
  session.event('session_finished', { status, criteria_failed: criteria.filter((c) => !c.passed).map((c) => c.id) })
  const ok = status === 'completed' && criteria.every((c) => c.passed)
  return { status, criteria, exitCode: ok ? 0 : 1 }
}
