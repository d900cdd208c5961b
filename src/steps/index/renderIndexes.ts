import type { AlembicAgreement, IndexOutput } from './output.ts'

const ms = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(2)} ms`)
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

export function renderIndexes(o: IndexOutput): string {
  return [
    '## Indexes',
    '',
    '| table.column | index | action | valid | in pg_indexes | planner uses it | build | maintenance_work_mem | size | query before | query after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...o.indexes.map(
      (i) =>
        `| ${i.table}.${i.column} | ${i.name} | ${i.action} | ${i.valid ? 'yes' : '**no**'} | ${i.listed_in_pg_indexes ? 'yes' : '**no**'} | ${i.explain_scan === 'index' ? 'yes' : i.explain_index === i.name ? 'usable; the planner prefers a scan on this size' : '**no**'} | ${i.build_seconds === null ? 'not built' : `${i.build_seconds.toFixed(1)} s`} | ${i.maintenance_work_mem_mb === null ? '' : `${i.maintenance_work_mem_mb} MB (graph ~${i.estimated_graph_mb} MB${i.memory_capped_by ? `, capped by ${i.memory_capped_by}` : ''})`} | ${mb(i.size_bytes)} | ${ms(i.query_ms_before)} | ${ms(i.query_ms_after)} |`,
    ),
    '',
    ...(o.indexes.some((i) => i.rows_indexed === 0)
      ? [
          'Built before the backfill, as the seed orders it: HNSW skips NULL embeddings, so an index holds only the rows embedded so far and the "query after" figure says little. The validate batch measures latency on the filled index.',
          '',
        ]
      : []),
    ...o.indexes.map(
      (i) =>
        `- ${i.name}: ${i.reason}; ${i.rows_indexed.toLocaleString('en-US')} rows indexed.${i.memory_advice ? ` **Memory**: ${i.memory_advice}.` : ''}${i.parallel_note ? ` ${i.parallel_note}.` : ''} Queries must order by \`${i.search.expression} ${i.search.operator} ${i.search.query ?? `$1::${i.search.cast_type}`}\`${i.search.rerank ? `, fetching ${i.search.rerank.factor}x the rows wanted and ordering those by \`${i.search.rerank.operator} $1::${i.search.rerank.cast_type}\` (binary quantization re-ranked by the full vector)` : ''}${i.search.where ? `, and hold \`${i.search.where}\` in their WHERE (the column has no dimensions of its own: the index is on the cast, partial to the plan's length, so a write of another length never meets it). **Change the application's query to match**` : ''}. Definition: \`${i.definition}\``,
    ),
    '',
    ...o.indexes
      .filter((i) => i.partitions.length > 0)
      .flatMap((i) => [
        `### ${i.table}: partitioned, ${i.partitions.length} partitions`,
        '',
        `${i.name} was created ON ONLY the parent; each partition's index was built concurrently (no partition blocked for writes while its graph built) and attached to it.`,
        '',
        '| partition | index | valid | size |',
        '| --- | --- | --- | --- |',
        ...i.partitions.map(
          (p) =>
            `| ${p.table} | ${p.index}${p.reused ? ' (built by an earlier run, attached)' : ''} | ${p.valid ? 'yes' : '**no**'} | ${mb(p.size_bytes)} |`,
        ),
        '',
      ]),
    ...(o.indexes.some((i) => i.left_beside.length)
      ? [
          '### Indexes the application cannot use, left in place',
          '',
          'Every insert and every embedding written still maintains them. `index.replace_mismatched: true` drops them once the right index is built.',
          '',
          '| table.column | index | method, operator class | valid | size | scans since statistics reset |',
          '| --- | --- | --- | --- | --- | --- |',
          ...o.indexes.flatMap((i) =>
            i.left_beside.map(
              (b) =>
                `| ${i.table}.${i.column} | ${b.name} | ${b.method}, ${b.opclass} | ${b.valid ? 'yes' : 'no'} | ${mb(b.size_bytes)} | ${b.scans} |`,
            ),
          ),
          '',
        ]
      : []),
    '## Migration',
    '',
    `- SQL: \`${o.migrations.up_sql}\` (up), \`${o.migrations.down_sql}\` (down)`,
    `- Alembic revision: ${o.migrations.alembic_revision ? `\`${o.migrations.alembic_revision}\`` : 'none (the plan names no Alembic versions folder, or nothing needed building)'}`,
    `- applied by: ${o.migrations.applied_with}`,
    '',
    ...(o.alembic ? alembicSection(o.alembic) : []),
    'EXPLAIN ANALYZE of each query is in `explain.txt` beside this report.',
    '',
  ].join('\n')
}

/** What the application's models and env.py need so that its Alembic agrees, and its own check. */
function alembicSection(a: AlembicAgreement): string[] {
  const check = a.check
  return [
    "## The application's Alembic",
    '',
    check
      ? check.unavailable
        ? `\`${check.command}\` is not available in this Alembic (it came in 1.9): ${check.output}`
        : `\`${check.command}\`: ${check.passed ? '**passed**: the models and the database agree' : `**failed** (exit ${check.exit_code}): ${check.output}`}`
      : "The application's `alembic check` was not run (alembic.check: false).",
    '',
    'In the models (after each class), so that autogenerate keeps the indexes:',
    '',
    '```python',
    'from sqlalchemy import Index',
    ...a.declarations.map((d) => d.code ?? `# ${d.index} (${d.table}): no model declares it plainly; the filter below keeps it out`),
    '```',
    '',
    "In env.py, passed to `context.configure(...)`, so that autogenerate leaves the runner's schema alone:",
    '',
    '```python',
    a.env_filter.trimEnd(),
    '```',
    '',
    a.patched.length
      ? `Written into the application (alembic.patch): ${a.patched.map((f) => `\`${f}\``).join(', ')}.`
      : 'Nothing was written into the application (set alembic.patch to have it done).',
    '',
  ]
}
