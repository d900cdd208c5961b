import type { Session } from '../checkpoint/session.ts'
import type { Plan } from '../plan/schema.ts'
import { describeHeadline, type Review } from './verdict.ts'

// summary.md: what a reviewer reads first. The verdict and the one next action, the story
// before and after per column, the success criteria as measured, what each batch did, and
// where every artifact is.

export function writeSummary(session: Session, plan: Plan, review: Review): string {
  const { state } = session
  const criteria = state.criteria ?? []
  const hasValidate = plan.batches.some((b) => b.step === 'validate')
  const lines = [
    `# ${plan.title}`,
    '',
    `**Verdict: ${review.verdict.title}.**`,
    '',
    `Next: ${review.verdict.next}.`,
    '',
    `Session \`${state.session_id}\` · status ${state.status} · target: ${state.target ?? 'unknown'}`,
    `Plan: \`${state.plan_path}\` (sha256 ${state.plan_sha256.slice(0, 12)}…)`,
    '',
    ...(review.headlines.length ? ['## Before and after', '', ...review.headlines.map((h) => `- ${describeHeadline(h)}`), ''] : []),
    '## Success criteria',
    '',
  ]
  if (criteria.length > 0) {
    lines.push('| criterion | threshold | measured | result |', '| --- | --- | --- | --- |')
    for (const c of criteria)
      lines.push(
        `| ${c.description} | ${c.threshold} | ${c.measured} | ${c.passed ? 'pass' : c.pending ? `waiting for ${c.pending}` : '**FAIL**'} |`,
      )
  } else {
    lines.push(hasValidate ? 'Not measured: the validate batch did not complete.' : 'Not measured: this plan has no validate batch.')
  }
  lines.push(
    '',
    '## Batches',
    '',
    '| # | batch | agent | status | attempts | result | report |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  )
  state.batches.forEach((b, i) => {
    const result = (b.status === 'failed' || b.status === 'interrupted' ? b.error : b.summary) ?? ''
    lines.push(
      `| ${i + 1} | ${b.id} | ${b.agent} | ${b.status} | ${b.attempts} | ${result.replace(/\|/g, '\\|').replace(/\n/g, ' ')} | ${b.report_path ? `[report](${b.report_path})` : ''} |`,
    )
  })
  if (state.check_ins?.length) {
    lines.push('', '## Check-ins', '', '| stopped | batch | at | headline | went on |', '| --- | --- | --- | --- | --- |')
    for (const c of state.check_ins)
      lines.push(
        `| ${c.where} | ${c.batch} | ${c.paused_at} | ${c.headline.replace(/\|/g, '\\|')} | ${c.went_on_at ? `${c.went_on_at} by ${c.went_on_by}` : 'not yet'} |`,
      )
  }
  lines.push(
    '',
    '## Files',
    '',
    '- `report.html`: this summary with charts (coverage, latency, recall against ef_search), one self-contained page',
    '- `coordination-state.json`: where each batch is (status, attempts, times, errors)',
    '- `batch-progress.json`: cursors inside batches, for resume',
    '- `events.ndjson`: every event, in order',
    "- `batches/NN-<id>/output.json` and `report.md`: each batch's typed output and its agent's report",
    '',
  )
  const text = lines.join('\n')
  session.writeArtifact('summary.md', text)
  return text
}
