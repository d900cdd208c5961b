import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Marked } from 'marked'
import type { Session } from '../checkpoint/session.ts'
import type { Plan } from '../plan/schema.ts'
import { escapeHtml, groupedBarsLog, linesLogX } from './charts.ts'
import type { Review } from './verdict.ts'

// report.html: the whole session in one self-contained page (no scripts, no external assets).
// First the verdict and the one next action (#verdict), then the story before and after per
// column, the criteria with the plan's thresholds, pictures where they beat words, and last
// every batch's report and EXPLAIN plans, so a reviewer needs no other file.

// The batches' reports carry plan identifiers, SQL and error text: raw HTML in them is shown,
// never rendered. Their headings sit two levels below the page's own.
const markdown = new Marked({
  renderer: {
    html: ({ text }) => escapeHtml(text),
    heading({ tokens, depth }) {
      const level = Math.min(6, depth + 2)
      return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`
    },
  },
})

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #111827; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; width: 100%; table-layout: auto; }
th, td { border: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
th { background: #f9fafb; }
pre, code { overflow-wrap: anywhere; white-space: pre-wrap; }
pre { background: #f9fafb; padding: 8px; border: 1px solid #e5e7eb; font-size: 12px; }
.pass { color: #15803d; font-weight: bold; } .fail { color: #b91c1c; font-weight: bold; } .waiting { color: #b45309; font-weight: bold; }
td.pass, td.fail, td.waiting, th { white-space: nowrap; }
#verdict { border-left: 6px solid; padding: 0.6rem 1rem; margin: 1rem 0 1.5rem; background: #f9fafb; }
#verdict.met { border-color: #15803d; } #verdict.fixed_worker_pending, #verdict.paused { border-color: #b45309; }
#verdict.not_met, #verdict.failed, #verdict.interrupted, #verdict.unfinished { border-color: #b91c1c; }
#verdict h2 { margin: 0 0 0.3rem; font-size: 1.2rem; }
.meter { background: #e5e7eb; width: 200px; max-width: 40%; height: 12px; display: inline-block; vertical-align: middle; margin-right: 6px; }
.meter > span { background: #2563eb; height: 12px; display: block; }
figure { margin: 1rem 0 2rem; } figcaption { color: #374151; margin-bottom: 0.3rem; }
.legend { font-size: 12px; color: #374151; } .key { margin-right: 1rem; white-space: nowrap; } .key svg { vertical-align: middle; margin-right: 4px; }
details table { display: block; overflow-x: auto; } details td code { overflow-wrap: anywhere; }
details { margin: 0.5rem 0; border: 1px solid #e5e7eb; padding: 0.3rem 0.8rem; } summary { cursor: pointer; font-weight: bold; }
`

const ms = (v: number) => (Number.isNaN(v) ? 'n/a' : `${v.toFixed(1)} ms`)

export function writeHtmlReport(session: Session, plan: Plan, review: Review): string {
  const { state } = session
  const { verdict, diagnosis, validation } = review
  const criteria = state.criteria ?? []
  const sections: string[] = [
    `<section id="verdict" class="${verdict.kind}"><h2>${escapeHtml(verdict.title)}</h2><p>Next: ${inline(verdict.next)}</p></section>`,
  ]
  if (review.headlines.length)
    sections.push(
      '<h2>Before and after</h2>',
      `<table id="headline"><tr><th>column</th><th>before (diagnosis)</th><th>after (validation)</th><th>faster</th></tr>${review.headlines
        .map(
          (h) =>
            `<tr><td>${escapeHtml(h.column)}</td><td>${h.before ? `${bar(h.before.embedded_percent)}<br>${escapeHtml(h.before.scan)} scan, ${ms(h.before.ms)}` : 'not diagnosed'}</td><td>${h.after ? `${bar(h.after.embedded_percent)}<br>${escapeHtml(h.after.scan)} scan, p50 <span class="p50">${ms(h.after.p50)}</span>, p95 ${ms(h.after.p95)}` : 'not measured'}</td><td class="speedup">${h.after?.speedup ? `${h.after.speedup.toFixed(1)}x (exact scan p50 ${ms(h.after.exact_p50)}, same run)` : ''}</td></tr>`,
        )
        .join('')}</table>`,
    )
  sections.push(
    `<h2>Success criteria</h2>`,
    criteria.length
      ? `<table id="criteria"><tr><th>criterion</th><th>threshold (from the plan)</th><th>measured</th><th>result</th></tr>${criteria.map((c) => `<tr><td>${escapeHtml(c.description)}</td><td>${escapeHtml(c.threshold)}</td><td>${escapeHtml(c.measured)}</td><td class="${c.passed ? 'pass' : c.pending ? 'waiting' : 'fail'}">${c.passed ? 'pass' : c.pending ? 'waiting' : 'FAIL'}</td></tr>`).join('')}</table>`
      : '<p>Not measured: the validate batch did not complete.</p>',
  )
  if (validation) sections.push(...charts(plan, validation))
  sections.push(
    '<h2>Batches</h2>',
    `<table><tr><th>#</th><th>batch</th><th>agent</th><th>status</th><th>attempts</th><th>result</th></tr>${state.batches
      .map(
        (b, i) =>
          `<tr><td>${i + 1}</td><td>${b.report_path ? `<a href="#batch-${escapeHtml(b.id)}">${escapeHtml(b.id)}</a>` : escapeHtml(b.id)}</td><td>${escapeHtml(b.agent)}</td><td class="${b.status === 'completed' ? 'pass' : b.status === 'failed' ? 'fail' : ''}">${escapeHtml(b.status)}</td><td>${b.attempts}</td><td>${escapeHtml((b.status === 'completed' ? b.summary : b.error) ?? '')}</td></tr>`,
      )
      .join('')}</table>`,
    ...(state.check_ins?.length
      ? [
          '<h2>Check-ins</h2>',
          `<table><tr><th>stopped</th><th>batch</th><th>at</th><th>headline</th><th>went on</th></tr>${state.check_ins
            .map(
              (c) =>
                `<tr><td>${c.where}</td><td>${escapeHtml(c.batch)}</td><td>${c.paused_at}</td><td>${escapeHtml(c.headline)}</td><td>${c.went_on_at ? `${c.went_on_at} by ${escapeHtml(c.went_on_by ?? '?')}` : 'not yet'}</td></tr>`,
            )
            .join('')}</table>`,
        ]
      : []),
    ...state.batches.flatMap((b) => (b.report_path ? [batchSection(session, b.id, b.report_path)] : [])),
  )
  if (diagnosis === undefined && validation === undefined) sections.push('<p>No batch measured the database yet.</p>')
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(plan.title)}: session ${escapeHtml(state.session_id)}</title>
<style>${STYLE}</style></head><body>
<h1>${escapeHtml(plan.title)}</h1>
<p>Session <code>${escapeHtml(state.session_id)}</code> · status ${escapeHtml(state.status)} · target ${escapeHtml(state.target ?? 'unknown')}</p>
${sections.join('\n')}
</body></html>
`
  session.writeArtifact('report.html', html)
  return html
}

/** Backticks as code, the rest as text. */
function inline(text: string): string {
  return text
    .split('`')
    .map((part, i) => (i % 2 ? `<code>${escapeHtml(part)}</code>` : escapeHtml(part)))
    .join('')
}

function charts(plan: Plan, validation: NonNullable<Review['validation']>): string[] {
  const measured = validation.tables.filter((t) => t.latency)
  const at = (t: (typeof measured)[number]) => t.latency!.at_recommended ?? t.latency!.at_default
  // Recall is the index's only where the index answered: the planner's own index scans, or on a
  // table where it always chose the exact scan, those measured with sequential scans disabled.
  const indexPoints = (t: (typeof measured)[number]) => {
    const answered = t.latency!.sweep.filter((s) => s.iterative_scan === 'off' && s.scan === 'index')
    const natural = answered.filter((s) => !s.forced)
    return natural.length ? { points: natural, forced: false } : { points: answered, forced: true }
  }
  const swept = measured.filter((t) => indexPoints(t).points.length)
  const limit = plan.criteria.latency_p95_ms_max
  return [
    '<h2>Latency</h2>',
    groupedBarsLog(
      measured.map((t) => ({
        label: t.table,
        bars: [
          { label: 'exact scan p50', value: t.latency!.exact.p50, role: 'baseline' as const },
          { label: 'exact scan p95', value: t.latency!.exact.p95, role: 'baseline' as const },
          { label: `${at(t).scan} scan p50, ef ${at(t).setting.ef_search}`, value: at(t).p50, role: 'result' as const },
          { label: `${at(t).scan} scan p95, ef ${at(t).setting.ef_search}`, value: at(t).p95, role: 'result' as const },
        ],
      })),
      'ms',
      'Nearest-10 query latency, warm, one client, timed on the client; log scale',
      { baseline: 'exact scan (what a query costs without the index)', result: 'as the application runs it, at the recommended setting' },
      limit === null ? undefined : { value: limit, label: `criterion: p95 <= ${limit} ms (criteria.latency_p95_ms_max)` },
    ),
    ...(swept.length
      ? [
          '<h2>Recall against ef_search</h2>',
          linesLogX(
            swept.map((t) => ({
              label: `${t.table}${indexPoints(t).forced ? ' (sequential scans disabled: the planner scans this small table)' : ''}`,
              points: indexPoints(t).points.map((s) => ({ x: s.ef_search, y: s.recall })),
            })),
            'recall@10 of the index against the exact answers, by hnsw.ef_search (only settings at which the index answered)',
            'hnsw.ef_search',
            'recall@10',
            { value: plan.validate.recall_target, label: `target ${plan.validate.recall_target} (validate.recall_target)` },
          ),
        ]
      : []),
  ]
}

/** A batch's report rendered into the page, with the EXPLAIN plans of its folder. */
function batchSection(session: Session, id: string, reportPath: string): string {
  const folder = join(session.dir, reportPath, '..')
  const plans = existsSync(folder) ? readdirSync(folder).filter((f) => /^explain.*\.txt$/.test(f)) : []
  return `<details id="batch-${escapeHtml(id)}"><summary>Batch ${escapeHtml(id)}: report</summary>${markdown.parse(session.readArtifact(reportPath)) as string}${plans
    .map(
      (f) =>
        `<details><summary>${escapeHtml(f)}</summary><pre>${escapeHtml(session.readArtifact(join(reportPath, '..', f)))}</pre></details>`,
    )
    .join('')}</details>`
}

function bar(percent: number): string {
  return `<span class="meter"><span style="width:${percent.toFixed(1)}%"></span></span>${percent.toFixed(1)}%`
}
