import { driverLines } from './measureQuery.ts'
import { type BufferPass, renderMemory } from './measureMemory.ts'
import type { QueryMeasurement, ValidateOutput } from './output.ts'

const ms = (v: number) => `${v.toFixed(2)} ms`
const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`
const describePass = (p: BufferPass) =>
  `p50 ${ms(p.p50_ms)}, p95 ${ms(p.p95_ms)} (server time), ${p.hit_blocks.toFixed(0)} pages a query from shared_buffers and ${p.read_blocks.toFixed(0)} from outside it`

export function renderValidation(o: ValidateOutput): string {
  const lines = [
    '## Success criteria',
    '',
    '| criterion | threshold | measured | result |',
    '| --- | --- | --- | --- |',
    ...o.criteria.map((c) => `| ${c.description} | ${c.threshold} | ${c.measured} | ${c.passed ? 'pass' : '**FAIL**'} |`),
    '',
    `Database: ${o.database}${o.database === 'embedded' ? ' (PGlite, WebAssembly, one session: latency is not a server figure and concurrency is not exercised)' : ''}. Worker: ${o.worker}. Labelled queries: ${o.labelled_queries ?? 'none'}.`,
    '',
    ...(o.app_tests
      ? [
          "## Tests in the application's suite",
          '',
          `\`${o.app_tests.path}\` (${o.app_tests.framework}) asserts what this batch proved; the application's team keeps it in its suite.`,
          '',
          o.app_tests.ran
            ? `Run as \`${o.app_tests.command}\`: ${o.app_tests.passed} passed, ${o.app_tests.failed} failed, ${o.app_tests.skipped} skipped (exit ${o.app_tests.exit_code}).`
            : `Not run: ${o.app_tests.detail}.`,
          '',
          ...(o.app_tests.ran ? ['```', o.app_tests.detail, '```', ''] : []),
        ]
      : []),
    ...(o.memory ? renderMemory(o.memory) : []),
  ]
  for (const t of o.tables) {
    lines.push(`## ${t.table}.${t.column}`, '')
    lines.push(`- rows ${t.rows.toLocaleString('en-US')}, NULL embeddings ${t.nulls}`)
    if (t.partitions.length)
      lines.push(
        `- partitioned; NULL embeddings by partition: ${t.partitions.map((p) => `${p.table} ${p.nulls} of ${p.rows.toLocaleString('en-US')}`).join(', ')}; measured below as the application queries the parent`,
      )
    lines.push(
      `- index ${t.index.name ?? 'none'}: ${t.index.valid ? 'valid HNSW' : '**not a valid HNSW index**'}, ${mb(t.index.size_bytes)}; shared_buffers ${mb(t.index.shared_buffers_bytes)} (${t.index.fits_shared_buffers ? 'fits' : '**does not fit**: queries will read from disk'}); ${t.index.prewarmed ? 'prewarmed with pg_prewarm' : 'warmed by queries only'}`,
    )
    lines.push(
      `- EXPLAIN ANALYZE: ${t.explain.scan} scan${t.explain.index_name ? ` using ${t.explain.index_name}` : ''}, ${ms(t.explain.execution_ms)}${t.explain.scan !== 'index' ? `; with sequential scans disabled: ${t.explain.forced_index_name ?? 'no index scan'}` : ''} (explain-${t.table.split('.').pop()}.txt)`,
    )
    if (t.buffers)
      lines.push(
        `- the nearest-10 query under EXPLAIN (ANALYZE, BUFFERS), ${t.buffers.first_pass.queries} queries: before any warm-up ${describePass(t.buffers.first_pass)}; warm ${describePass(t.buffers.warm)}`,
      )
    for (const q of t.latency ? [t.latency, ...t.app_queries] : []) lines.push(...renderQuery(q))
    if (t.relevance)
      lines.push(
        `- relevance: ${t.relevance.queries} labelled queries, recall@${t.relevance.k} ${t.relevance.recall_at_k.toFixed(3)}, MRR ${t.relevance.mrr.toFixed(3)}`,
      )
    if (t.known_items)
      lines.push(
        `- known items: ${t.known_items.queries} rows spread over the table (by a hash of their key, the same in every session), each searched by the first half of its own text: ${Math.round(t.known_items.recall_at_k * t.known_items.queries)} came back in the top ${t.known_items.k} (recall@${t.known_items.k} ${t.known_items.recall_at_k.toFixed(3)}); embedded again, ${t.known_items.consistency.matched} of ${t.known_items.consistency.sampled} landed on their stored vector (cosine >= 0.99; lowest ${t.known_items.consistency.min_cosine.toFixed(3)})`,
      )
    if (t.auto_embed)
      lines.push(
        `- auto-embedding: ${
          t.auto_embed.measured
            ? t.auto_embed.method === 'requeue'
              ? `an existing row queued again was embedded by a worker ${ms(t.auto_embed.delay_ms!)} later`
              : `a probe row was embedded ${ms(t.auto_embed.delay_ms!)} after its insert`
            : `not embedded: ${t.auto_embed.reason}`
        }${t.auto_embed.capture ? `; capture ${t.auto_embed.capture.proved ? 'proved' : '**not proved**'}: ${t.auto_embed.capture.detail}` : ''}`,
      )
    lines.push('')
  }
  return lines.join('\n')
}

const setting = (s: { ef_search: number; iterative_scan: string }) =>
  `ef_search ${s.ef_search}${s.iterative_scan === 'off' ? '' : `, iterative_scan ${s.iterative_scan}`}`

function renderRun(label: string, r: QueryMeasurement['at_default']): string {
  const spread = r.rounds_p95.length > 1 ? ` (p95 of each round: ${r.rounds_p95.map(ms).join(', ')})` : ''
  return `| ${label} | ${setting(r.setting)} | ${r.scan}${r.index_name ? ` (${r.index_name})` : ''} | ${r.scan === 'index' ? r.recall.toFixed(3) : 'not claimed (no index scan)'} | ${ms(r.p50)} | ${ms(r.p95)}${spread} | ${ms(r.p99)} |`
}

function renderQuery(q: QueryMeasurement): string[] {
  return [
    `### ${q.name}`,
    '',
    '```sql',
    q.sql,
    '```',
    '',
    `${q.queries} query vectors sampled from the column, ${q.rounds} round(s) at each final setting; exact answers over ${q.exact_queries} of them (index scans off, the same query otherwise): p50 ${ms(q.exact.p50)}, p95 ${ms(q.exact.p95)}.`,
    '',
    `Recommendation: ${q.why}.`,
    ...(q.apply.length
      ? [
          '',
          `Apply it where the application runs this query, in the same transaction, before the query (\`${q.apply.join('; ')}\`); never for the role or the database, where another query may need another setting:`,
          '',
          ...driverLines(q.apply).map((d) => `- ${d.driver}: \`${d.line}\``),
        ]
      : []),
    '',
    `Measured as the application runs it${q.measured_as ? `, as its role ${q.measured_as}` : " (as the runner's role: it may not SET ROLE to the application's)"}, on fresh statistics:`,
    '',
    '| measured at | setting | scan the planner chose | recall | p50 | p95 | p99 |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    renderRun("the application's settings (as it runs today; the criteria are judged here)", q.at_default),
    ...(q.at_recommended && q.apply.length ? [renderRun('with the recommendation applied', q.at_recommended)] : []),
    '',
    ...(q.sweep.length
      ? [
          '| ef_search | iterative scan | sequential scans | scan the planner chose | recall | p50 | p95 |',
          '| --- | --- | --- | --- | --- | --- | --- |',
          ...q.sweep.map(
            (s) =>
              `| ${s.ef_search} | ${s.iterative_scan} | ${s.forced ? 'disabled' : 'allowed'} | ${s.scan}${s.index_name ? ` (${s.index_name})` : ''} | ${s.recall.toFixed(3)} | ${ms(s.p50)} | ${ms(s.p95)} |`,
          ),
          '',
          ...(q.sweep.filter((s) => s.scan === 'sequential').length > 1
            ? [
                'A plan that uses no index runs the same at every setting: it was timed once, and its figures are shown at each setting the planner chose it.',
                '',
              ]
            : []),
        ]
      : []),
  ]
}
