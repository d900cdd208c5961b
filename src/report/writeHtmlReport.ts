import type { Session } from '../checkpoint/session.ts'
import type { Plan } from '../plan/schema.ts'
import { diagnoseOutputSchema } from '../steps/diagnose/output.ts'
import { validateOutputSchema } from '../steps/validate/output.ts'
import { escapeHtml, groupedBarsLog, linesLogX } from './charts.ts'

// report.html: one self-contained page for reviewers (no scripts, no external assets), with
// pictures where they beat words: coverage before and after, latency of the index against the
// exact scan, recall against hnsw.ef_search.

export function writeHtmlReport(session: Session, plan: Plan, outputsByStep: Map<string, unknown>): string {
  const { state } = session
  const diagnosis = diagnoseOutputSchema.safeParse(outputsByStep.get('diagnose'))
  const validation = validateOutputSchema.safeParse(outputsByStep.get('validate'))
  const criteria = state.criteria ?? []
  const sections: string[] = []

  sections.push(
    `<h2>Success criteria</h2>`,
    criteria.length
      ? `<table><tr><th>criterion</th><th>threshold</th><th>measured</th><th>result</th></tr>${criteria.map((c) => `<tr><td>${escapeHtml(c.description)}</td><td>${escapeHtml(c.threshold)}</td><td>${escapeHtml(c.measured)}</td><td class="${c.passed ? 'pass' : 'fail'}">${c.passed ? 'pass' : 'FAIL'}</td></tr>`).join('')}</table>`
      : '<p>Not measured: the validate batch did not complete.</p>',
  )
  if (diagnosis.success || validation.success) {
    const groups = (diagnosis.success ? diagnosis.data.targets : []).map((t) => {
      const after = validation.success ? validation.data.tables.find((v) => v.table === `${t.schema}.${t.table}`) : undefined
      const percent = (rows: number, nulls: number) => (rows ? (100 * (rows - nulls)) / rows : 0)
      return `<tr><td>${escapeHtml(`${t.schema}.${t.table}.${t.column}`)}</td><td>${bar(percent(t.rows, t.nulls))}</td><td>${after ? bar(percent(after.rows, after.nulls)) : 'not measured'}</td></tr>`
    })
    sections.push(
      '<h2>Embeddings coverage</h2>',
      `<table><tr><th>column</th><th>before (diagnosis)</th><th>after (validation)</th></tr>${groups.join('')}</table>`,
    )
  }
  if (validation.success) {
    const measured = validation.data.tables.filter((t) => t.latency)
    const at = (q: NonNullable<(typeof measured)[number]['latency']>) => q.at_recommended ?? q.at_default
    const swept = measured.filter((t) => t.latency!.sweep.some((s) => !s.forced && s.iterative_scan === 'off'))
    sections.push(
      '<h2>Latency</h2>',
      groupedBarsLog(
        measured.map((t) => ({
          label: t.table,
          bars: [
            { label: `exact scan p50`, value: t.latency!.exact.p50 },
            { label: `exact scan p95`, value: t.latency!.exact.p95 },
            { label: `${at(t.latency!).scan} scan p50 (ef ${at(t.latency!).setting.ef_search})`, value: at(t.latency!).p50 },
            { label: `${at(t.latency!).scan} scan p95 (ef ${at(t.latency!).setting.ef_search})`, value: at(t.latency!).p95 },
          ],
        })),
        'ms',
        'Nearest-10 query latency, before (exact scan) and after, at the recommended setting (the plan the planner chose there); log scale',
      ),
      ...(swept.length
        ? [
            '<h2>Recall against ef_search</h2>',
            linesLogX(
              swept.map((t) => ({
                label: t.table,
                points: t
                  .latency!.sweep.filter((s) => !s.forced && s.iterative_scan === 'off')
                  .map((s) => ({ x: s.ef_search, y: s.recall })),
              })),
              'recall@10 against the exact answers, by hnsw.ef_search, with the plan the planner chose at each (only columns with an index the query can use)',
              'hnsw.ef_search',
              'recall@10',
              plan.validate.recall_target,
            ),
          ]
        : []),
    )
  }
  sections.push(
    '<h2>Batches</h2>',
    `<table><tr><th>#</th><th>batch</th><th>agent</th><th>status</th><th>attempts</th><th>result</th></tr>${state.batches
      .map(
        (b, i) =>
          `<tr><td>${i + 1}</td><td>${b.report_path ? `<a href="${escapeHtml(b.report_path)}">${escapeHtml(b.id)}</a>` : escapeHtml(b.id)}</td><td>${escapeHtml(b.agent)}</td><td>${escapeHtml(b.status)}</td><td>${b.attempts}</td><td>${escapeHtml((b.status === 'completed' ? b.summary : b.error) ?? '')}</td></tr>`,
      )
      .join('')}</table>`,
  )
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(plan.title)}: session ${escapeHtml(state.session_id)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #111827; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; width: 100%; }
th, td { border: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f9fafb; }
.pass { color: #15803d; font-weight: bold; } .fail { color: #b91c1c; font-weight: bold; }
.meter { background: #e5e7eb; width: 220px; height: 12px; display: inline-block; vertical-align: middle; margin-right: 6px; }
.meter > span { background: #2563eb; height: 12px; display: block; }
figure { margin: 1rem 0 2rem; } figcaption { color: #374151; margin-bottom: 0.3rem; }
</style></head><body>
<h1>${escapeHtml(plan.title)}</h1>
<p>Session <code>${escapeHtml(state.session_id)}</code> · status <strong>${escapeHtml(state.status)}</strong> · target ${escapeHtml(state.target ?? 'unknown')}</p>
${sections.join('\n')}
</body></html>
`
  session.writeArtifact('report.html', html)
  return html
}

function bar(percent: number): string {
  return `<span class="meter"><span style="width:${percent.toFixed(1)}%"></span></span>${percent.toFixed(1)}%`
}
