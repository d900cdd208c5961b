import type { Session } from '../checkpoint/session.ts'
import type { SessionState } from '../checkpoint/sessionState.ts'
import { type DiagnoseOutput, diagnoseOutputSchema } from '../steps/diagnose/output.ts'
import { driverLines } from '../steps/validate/measureQuery.ts'
import { type ValidateOutput, validateOutputSchema } from '../steps/validate/output.ts'

// What a reviewer reads first, in summary.md and report.html alike: the verdict with the one
// next action, and per target column the story before and after, from measured values only.

export type VerdictKind = 'met' | 'fixed_worker_pending' | 'not_met' | 'failed' | 'interrupted' | 'paused' | 'unfinished'

export interface Verdict {
  kind: VerdictKind
  /** One line: met / not met / failed, and what. */
  title: string
  /** The one next action, as a command or a sentence. */
  next: string
}

/** An error's first line, and when that only introduces a list ("...: "), the list's first item too. */
function firstReason(error: string): string {
  const [first = '', second = ''] = error.split('\n')
  const more = error.split('\n').length - 2
  return first.trimEnd().endsWith(':') && second ? `${first.trim()} ${second.trim()}${more > 0 ? ` (and ${more} more)` : ''}` : first
}

export function decideVerdict(state: SessionState, sessionDir: string, validation?: ValidateOutput, diagnosis?: DiagnoseOutput): Verdict {
  const resume = `\`runner resume --session ${sessionDir}\``
  const stopped = state.batches.find((b) => b.status === 'failed' || b.status === 'interrupted')
  if (state.status === 'failed' || stopped?.status === 'failed')
    return {
      kind: 'failed',
      title: `Failed: batch ${stopped?.id ?? '?'} stopped${stopped?.error ? `: ${firstReason(stopped.error)}` : ''}`,
      next: `fix what the error names, then ${resume}: completed batches are skipped, the failed one continues from its checkpoint`,
    }
  if (state.status === 'interrupted')
    return { kind: 'interrupted', title: `Interrupted in batch ${stopped?.id ?? '?'}`, next: `${resume} continues from its checkpoint` }
  const checkIn = state.check_ins?.at(-1)
  if (state.status === 'paused' && checkIn) {
    const report = state.batches.find((b) => b.id === checkIn.batch)?.report_path
    const next = state.batches.find((b) => b.status !== 'completed')
    return checkIn.where === 'after'
      ? {
          kind: 'paused',
          title: `Paused after batch ${checkIn.batch}, as asked: ${checkIn.headline}`,
          next: `read ${report ?? 'its report'}; ${resume} goes on with batch ${next?.id ?? '?'}`,
        }
      : {
          kind: 'paused',
          title: `Paused before batch ${checkIn.batch}: declined at --confirm`,
          next: `${resume} goes on with batch ${checkIn.batch}`,
        }
  }
  if (state.status !== 'completed') return { kind: 'unfinished', title: 'Not finished yet', next: `${resume} if no runner is driving it` }
  const criteria = state.criteria ?? []
  const failed = criteria.filter((c) => !c.passed && !c.pending)
  const pending = criteria.filter((c) => !c.passed && c.pending)
  // Each query has its own measured setting (tables differ): said per query, to set where that query runs.
  const settings = (validation?.tables ?? []).flatMap((t) =>
    (t.latency ? [t.latency, ...t.app_queries] : [])
      .filter((q) => q.apply.length)
      .map((q) => `${t.table} ${q.name} \`${q.apply.join('; ')}\` (SQLAlchemy: \`${driverLines(q.apply)[0]!.line}\`)`),
  )
  // Materialized views over a target column keep the old vectors: refreshing them is the application's call.
  const refresh = (diagnosis?.targets ?? []).flatMap((t) => t.materialized_views.map((v) => `\`${v.refresh}\``))
  const apply =
    (settings.length ? `; apply the measured settings where each query runs (SET LOCAL in its transaction): ${settings.join(', ')}` : '') +
    (refresh.length
      ? `; refresh the materialized views that copy the embeddings, when it suits the application: ${refresh.join(', ')}`
      : '')
  if (failed.length)
    return {
      kind: 'not_met',
      title: `Not met: ${failed.map((c) => `${c.description} (${c.threshold}; measured ${c.measured.split(';')[0]})`).join('; ')}`,
      next: settings.length
        ? `${apply.slice(2)}; then say so in the plan (target.application_settings, or the query's settings) and start a new session: it measures the query as the application then runs it`
        : 'see the criteria table and the validate batch report for the measured values; change what they point at, then start a new session',
    }
  if (pending.length)
    return {
      kind: 'fixed_worker_pending',
      title: `Fixed, with one thing left to you: ${[...new Set(pending.map((c) => c.pending))].join('; ')}`,
      next: `deploy \`runner worker <plan>\` as a service (deploy/ holds a systemd unit and a container file)${apply}`,
    }
  return {
    kind: 'met',
    title: criteria.length ? `Met: all ${criteria.length} success criteria` : 'Completed: this plan measures no success criteria',
    next: apply ? apply.slice(2) : 'nothing: keep `runner worker` running as a service',
  }
}

export interface Headline {
  column: string
  before: { embedded_percent: number; scan: string; ms: number } | null
  after: { embedded_percent: number; scan: string; p50: number; p95: number; exact_p50: number; speedup: number | null } | null
}

const percent = (rows: number, nulls: number) => (rows ? (100 * (rows - nulls)) / rows : 0)

/**
 * Before: the diagnosis (coverage, and the application's query as EXPLAIN ANALYZE timed it).
 * After: the validation (coverage, and the query at the setting the application is told to
 * run, against the exact scan timed the same way in the same run: that ratio is the speedup).
 */
export function headlines(diagnosis?: DiagnoseOutput, validation?: ValidateOutput): Headline[] {
  const columns = new Set([
    ...(diagnosis?.targets ?? []).map((t) => `${t.schema}.${t.table}.${t.column}`),
    ...(validation?.tables ?? []).map((t) => `${t.table}.${t.column}`),
  ])
  return [...columns].map((column) => {
    const d = diagnosis?.targets.find((t) => `${t.schema}.${t.table}.${t.column}` === column)
    const plan = d && diagnosis?.query_plans.find((q) => q.table === `${d.schema}.${d.table}` && q.column === d.column)
    const v = validation?.tables.find((t) => `${t.table}.${t.column}` === column)
    const at = v?.latency ? (v.latency.at_recommended ?? v.latency.at_default) : null
    return {
      column,
      before: d
        ? { embedded_percent: percent(d.rows, d.nulls), scan: plan?.scan ?? 'not measured', ms: plan?.execution_ms ?? Number.NaN }
        : null,
      after:
        v && at
          ? {
              embedded_percent: percent(v.rows, v.nulls),
              scan: at.scan,
              p50: at.p50,
              p95: at.p95,
              exact_p50: v.latency!.exact.p50,
              speedup: at.scan === 'index' ? v.latency!.exact.p50 / at.p50 : null,
            }
          : null,
    }
  })
}

const ms = (v: number) => (Number.isNaN(v) ? 'n/a' : `${v.toFixed(1)} ms`)

/** One sentence per column, for summary.md and the page. */
export function describeHeadline(h: Headline): string {
  const before = h.before
    ? `${h.before.embedded_percent.toFixed(0)}% embedded, the query a ${h.before.scan} scan of ${ms(h.before.ms)}`
    : 'not diagnosed'
  const after = h.after
    ? `${h.after.embedded_percent.toFixed(0)}% embedded, a ${h.after.scan} scan at p50 ${ms(h.after.p50)} (p95 ${ms(h.after.p95)})${h.after.speedup ? `, ${h.after.speedup.toFixed(1)}x faster than the exact scan in the same run (p50 ${ms(h.after.exact_p50)})` : ''}`
    : 'not measured'
  return `${h.column}: before, ${before}; after, ${after}`
}

export interface Review {
  verdict: Verdict
  headlines: Headline[]
  diagnosis?: DiagnoseOutput
  validation?: ValidateOutput
}

/** Everything both summary.md and report.html open with, from the session and its batches' outputs by step. */
export function reviewOf(session: Session, outputsByStep: Map<string, unknown>): Review {
  const diagnosis = diagnoseOutputSchema.safeParse(outputsByStep.get('diagnose'))
  const validation = validateOutputSchema.safeParse(outputsByStep.get('validate'))
  const d = diagnosis.success ? diagnosis.data : undefined
  const v = validation.success ? validation.data : undefined
  return { verdict: decideVerdict(session.state, session.dir, v, d), headlines: headlines(d, v), diagnosis: d, validation: v }
}

/** report.md of a batch that failed: what stopped it and how to go on (a completed batch's comes from its agent). */
export function failedBatchReport(batch: { id: string; title: string; agent: string }, error: string, sessionDir: string): string {
  return [
    `# Batch ${batch.id}: ${batch.title}`,
    '',
    `Agent: ${batch.agent}. **Failed.**`,
    '',
    '```',
    error,
    '```',
    '',
    `Nothing after the failure ran. Fix what the error names, then \`runner resume --session ${sessionDir}\`: completed batches are skipped and this one continues from its checkpoint.`,
    '',
  ].join('\n')
}
