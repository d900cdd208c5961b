import type { ValidateOutput } from './output.ts'

const ms = (v: number) => `${v.toFixed(2)} ms`
const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`

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
  ]
  for (const t of o.tables) {
    lines.push(`## ${t.table}.${t.column}`, '')
    lines.push(`- rows ${t.rows.toLocaleString('en-US')}, NULL embeddings ${t.nulls}`)
    lines.push(
      `- index ${t.index.name ?? 'none'}: ${t.index.valid ? 'valid HNSW' : '**not a valid HNSW index**'}, ${mb(t.index.size_bytes)}; shared_buffers ${mb(t.index.shared_buffers_bytes)} (${t.index.fits_shared_buffers ? 'fits' : '**does not fit**: queries will read from disk'}); ${t.index.prewarmed ? 'prewarmed with pg_prewarm' : 'warmed by queries only'}`,
    )
    lines.push(
      `- EXPLAIN ANALYZE: ${t.explain.scan} scan${t.explain.index_name ? ` using ${t.explain.index_name}` : ''}, ${ms(t.explain.execution_ms)}${t.explain.scan !== 'index' ? `; with sequential scans disabled: ${t.explain.forced_index_name ?? 'no index scan'}` : ''} (explain-${t.table.split('.').pop()}.txt)`,
    )
    if (t.latency) {
      const l = t.latency
      lines.push(
        `- latency over ${l.queries} queries at ef_search ${l.ef_search}: p50 ${ms(l.index.p50)}, p95 ${ms(l.index.p95)}, p99 ${ms(l.index.p99)}; exact scan over ${l.exact_queries}: p50 ${ms(l.exact.p50)}, p95 ${ms(l.exact.p95)}, p99 ${ms(l.exact.p99)}; the index is ${l.speedup_p50.toFixed(1)}x faster at p50`,
        `- recommended \`SET hnsw.ef_search = ${l.recommended_ef_search}\`${l.recall_target_reached ? '' : ' (no candidate reached the recall target; this is the best found)'}`,
        ...(t.index.fits_shared_buffers
          ? []
          : [
              `- the index does not fit in shared_buffers: raise shared_buffers above ${mb(t.index.size_bytes)} (a server restart), or index at half precision (index.precision: half, half the size). Measured here on 100,000 x 1536: halfvec with shared_buffers holding the index reached recall@10 0.964 at p95 2.73 ms (bench/results.md).`,
            ]),
        '',
        '| ef_search | recall@10 | p50 | p95 |',
        '| --- | --- | --- | --- |',
        ...l.sweep.map((s) => `| ${s.ef_search} | ${s.recall_at_10.toFixed(3)} | ${ms(s.p50)} | ${ms(s.p95)} |`),
        '',
      )
    }
    if (t.relevance)
      lines.push(
        `- relevance: ${t.relevance.queries} labelled queries, recall@${t.relevance.k} ${t.relevance.recall_at_k.toFixed(3)}, MRR ${t.relevance.mrr.toFixed(3)}`,
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
