import { join } from 'node:path'
import { writeBatchReport } from '../agents/writeBatchReport.ts'
import type { CriterionResult, Session } from '../checkpoint/session.ts'
import type { Database } from '../db/database.ts'
import { runnerSchema } from '../db/runnerSchema/objects.ts'
import { resolveTargets } from '../db/target.ts'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import { errorMessage, Interrupted, RunnerError, TargetError, WorkError } from '../errors.ts'
import type { Log } from '../log/log.ts'
import type { Progress } from '../log/progress.ts'
import { dependenciesOf, orderBatches } from '../plan/orderBatches.ts'
import type { Batch, Plan } from '../plan/schema.ts'
import { writeHtmlReport } from '../report/writeHtmlReport.ts'
import { failedBatchReport, reviewOf } from '../report/verdict.ts'
import { writeSummary } from '../report/writeSummary.ts'
import { retryTransient } from '../retryTransient.ts'
import type { StepOutputs } from '../steps/outputs.ts'
import type { Step, StepContext, StepRegistry } from '../steps/step.ts'
import { checkPlanRunnable } from './checkPlanRunnable.ts'
import { countEmbeddings, embeddingChanges, readOnlyView } from './guards.ts'
import { describeRefusals, type PreflightResult } from './preflight.ts'

export interface RunOptions {
  session: Session
  /** What the read-only look at the target found: a refusal stops the session before its first writing batch. */
  preflight: PreflightResult
  /** The session's embedding provider, created on first use and shared by the preflight and every batch. */
  embeddings(): EmbeddingProvider
  /** The plan with the session's options applied. */
  plan: Plan
  registry: StepRegistry
  db: Database
  progress: Progress
  signal: AbortSignal
  log: Log
  /** Check-ins between batches: where to stop, and whom to ask before a batch that writes. */
  checkIns?: CheckIns
}

export interface CheckIns {
  /** Batch ids or steps to stop after; "each" stops after every batch. */
  pauseAfter: string[]
  /** Asked before each batch that writes; false stops the session there. */
  confirm?: (batch: Batch) => Promise<boolean>
  /** Who answers the confirmation (recorded). */
  operator: string
}

export interface RunResult {
  status: 'completed' | 'failed' | 'paused'
  criteria: CriterionResult[]
}

/**
 * Runs every batch of the session that is not completed yet, in dependency order. Completed
 * batches are never re-run: their saved outputs are read back and handed on. A batch that was
 * running or failed runs again, with the cursor it saved; one that meets a transient database
 * error runs again from its cursor after a backoff.
 */
export async function runSession(options: RunOptions): Promise<RunResult> {
  const { session, plan, registry, log } = options
  checkPlanRunnable(plan, registry)
  const outputs = new Map<string, unknown>()
  const ordered = orderBatches(plan.batches)

  for (const [position, batch] of ordered.entries()) {
    const step = registry.get(batch.step)!
    const state = session.batch(batch.id)
    if (state.status === 'completed' && state.output_path) {
      outputs.set(batch.id, step.output.parse(JSON.parse(session.readArtifact(state.output_path))))
      log(`batch ${batch.id}: completed earlier, skipped`)
      continue
    }
    if (options.signal.aborted) throw interrupt(session, batch.id)
    if (!batch.guards.read_only && options.preflight.refusals.length > 0) {
      const refusal = new TargetError(describeRefusals(session.state.plan_path, options.preflight.refusals))
      session.failBatch(batch.id, refusal.message, writeFailedReport(session, batch, refusal.message))
      session.event('preflight_refused', { batch: batch.id, refusals: options.preflight.refusals })
      finish(options, outputs, 'failed')
      throw refusal
    }

    if (!batch.guards.read_only && options.checkIns?.confirm) {
      if (!(await options.checkIns.confirm(batch))) {
        session.pause({ where: 'before', batch: batch.id, headline: `${batch.title} (declined at --confirm)` })
        session.event('session_paused', { before: batch.id, by: options.checkIns.operator })
        log(`paused before batch ${batch.id}, as answered; \`runner resume --session ${session.dir}\` goes on with it`)
        return finish(options, outputs, 'paused')
      }
      session.event('batch_confirmed', { batch: batch.id, by: options.checkIns.operator })
    }

    const inputs: Partial<StepOutputs> = {}
    for (const dep of dependenciesOf(batch, plan.batches)) (inputs as Record<string, unknown>)[dep.step] = outputs.get(dep.id)
    const resumed = session.hasCursor(batch.id)
    session.startBatch(batch.id)
    session.event('batch_started', { batch: batch.id, step: batch.step, attempt: state.attempts, resumed })
    log(`batch ${batch.id} (${batch.step}, ${batch.agent}): started${resumed ? ', continuing from its checkpoint' : ''}`)

    try {
      const output = await retryTransient(() => runBatch(options, batch, step, inputs), {
        what: `batch ${batch.id}`,
        again: 'running it again from its checkpoint',
        log,
        signal: options.signal,
        onRetry: (error, retry) => session.event('batch_retry', { batch: batch.id, error: errorMessage(error), retry }),
      })
      const summary = await recordCompletion(options, batch, step, output, session.batch(batch.id).started_at!)
      outputs.set(batch.id, output)
      const next = ordered.slice(position + 1).find((b) => session.batch(b.id).status !== 'completed')
      if (next && pausesAfter(options.checkIns, batch)) {
        session.pause({ where: 'after', batch: batch.id, headline: summary })
        session.event('session_paused', { after: batch.id })
        log(`paused after batch ${batch.id}, as asked: ${summary}`)
        log(
          `read ${join(session.dir, session.batch(batch.id).report_path!)}, then \`runner resume --session ${session.dir}\` goes on with batch ${next.id}`,
        )
        return finish(options, outputs, 'paused')
      }
    } catch (error) {
      if (error instanceof Interrupted) throw interrupt(session, batch.id)
      const message = errorMessage(error)
      session.failBatch(batch.id, message, writeFailedReport(session, batch, message))
      session.event('batch_failed', { batch: batch.id, error: message })
      log(`batch ${batch.id}: failed: ${message}`)
      finish(options, outputs, 'failed')
      // A mistake in the plan or a target that cannot take it is the user's to fix: say so with its own exit code.
      if (error instanceof RunnerError && (error.kind === 'usage' || error.kind === 'target')) throw error
      return { status: 'failed', criteria: session.state.criteria ?? [] }
    }
  }
  return finish(options, outputs, 'completed')
}

async function runBatch(options: RunOptions, batch: Batch, step: Step<any, any>, inputs: Partial<StepOutputs>): Promise<unknown> {
  const { session, plan, db } = options
  const run = async (handle: Database) => {
    const targets = await resolveTargets(handle, plan, session.state.plan_path)
    const context: StepContext<unknown> = {
      plan,
      batch,
      db: handle,
      targets,
      runnerSchema: runnerSchema(plan.target.runner_schema),
      writes: options.preflight.writes,
      inputs,
      progress: options.progress,
      signal: options.signal,
      log: options.log,
      checkpoint: {
        load: () => (step.cursor ? session.cursor(batch.id, step.cursor) : undefined),
        save: (cursor) => {
          if (!step.cursor) throw new Error(`step ${step.name} saves a cursor but declares no cursor format`)
          session.saveCursor(batch.id, step.cursor, cursor)
        },
      },
      writeArtifact: (name, content) => session.writeArtifact(join(session.batchDir(batch.id), name), content),
      embeddings: options.embeddings,
    }
    const before = batch.guards.writes_embeddings ? undefined : await countEmbeddings(handle, targets)
    const output = await step.run(context)
    if (before) {
      const changes = embeddingChanges(before, await countEmbeddings(handle, targets))
      if (changes) throw new WorkError(`guard violated: batch ${batch.id} may not write embeddings, but ${changes}`)
    }
    return output
  }
  const raw = batch.guards.read_only ? await db.transaction((tx) => run(readOnlyView(tx, db)), { readOnly: true }) : await run(db)
  const parsed = step.output.safeParse(raw)
  if (!parsed.success) throw new Error(`step ${batch.step} returned an output that does not match its schema: ${parsed.error.message}`)
  return parsed.data
}

function pausesAfter(checkIns: CheckIns | undefined, batch: Batch): boolean {
  return Boolean(checkIns?.pauseAfter.some((p) => p === 'each' || p === batch.id || p === batch.step))
}

/** Writes the batch's output and report and marks it completed; returns its summary. */
async function recordCompletion(
  options: RunOptions,
  batch: Batch,
  step: Step<any, any>,
  output: unknown,
  startedAt: string,
): Promise<string> {
  const { session, plan, log } = options
  const endedAt = new Date().toISOString()
  const dir = session.batchDir(batch.id)
  const summary = step.summarize(output)
  const outputPath = session.writeArtifact(join(dir, 'output.json'), `${JSON.stringify(output, null, 2)}\n`)
  const report = await writeBatchReport(
    { batch, summary, details: step.details(output), startedAt, endedAt },
    plan.agents,
    process.env,
    log,
  )
  const reportPath = session.writeArtifact(join(dir, 'report.md'), report)
  session.completeBatch(batch.id, { summary, output_path: outputPath, report_path: reportPath, ended_at: endedAt })
  session.event('batch_completed', { batch: batch.id, summary })
  log(`batch ${batch.id}: completed: ${summary}`)
  return summary
}

function writeFailedReport(session: Session, batch: Batch, error: string): string {
  return session.writeArtifact(join(session.batchDir(batch.id), 'report.md'), failedBatchReport(batch, error, session.dir))
}

function interrupt(session: Session, batchId: string): Interrupted {
  session.interruptBatch(batchId)
  session.event('interrupted', { batch: batchId })
  return new Interrupted()
}

function finish(options: RunOptions, outputs: Map<string, unknown>, status: RunResult['status']): RunResult {
  const { session, plan, registry } = options
  const criteria: CriterionResult[] = []
  for (const batch of plan.batches) {
    const step = registry.get(batch.step)!
    const output = outputs.get(batch.id)
    if (output !== undefined && step.criteria) criteria.push(...step.criteria(output))
  }
  session.finish(status, criteria)
  const byStep = new Map(plan.batches.flatMap((b) => (outputs.has(b.id) ? [[b.step, outputs.get(b.id)] as const] : [])))
  const review = reviewOf(session, byStep)
  writeSummary(session, plan, review)
  writeHtmlReport(session, plan, review)
  session.event('session_finished', { status, criteria_failed: criteria.filter((c) => !c.passed).map((c) => c.id) })
  return { status, criteria }
}
