import { renderMemory } from '../validate/measureMemory.ts'
import type { DiagnoseOutput } from './output.ts'

const n = (value: number) => value.toLocaleString('en-US')

type Finding = DiagnoseOutput['findings'][number]

/** Findings of one code together: 4 codes over 3 tables read as 4 rows, not 12 near-identical ones. */
export function groupFindings(findings: Finding[]) {
  const groups = new Map<
    string,
    { code: string; severity: Finding['severity']; where: string[]; evidence: string[]; recommendation: string }
  >()
  for (const f of findings) {
    const where = f.table ? `${f.table}${f.column ? `.${f.column}` : ''}` : ''
    const group = groups.get(f.code) ?? { code: f.code, severity: f.severity, where: [], evidence: [], recommendation: f.recommendation }
    if (where && !group.where.includes(where)) group.where.push(where)
    group.evidence.push(where ? `${where}: ${f.evidence}` : f.evidence)
    groups.set(f.code, group)
  }
  return [...groups.values()]
}

/** The diagnosis as Markdown for report.md: tables of evidence, every figure from the output. */
export function renderDiagnosis(o: DiagnoseOutput): string {
  const lines = [
    '## Root cause',
    '',
    o.root_cause,
    '',
    '## Findings',
    '',
    'One row per kind of finding, with every column it was found on; the evidence per column follows the table.',
    '',
    '| severity | code | found on | recommendation |',
    '| --- | --- | --- | --- |',
    ...groupFindings(o.findings).map(
      (g) => `| ${g.severity} | ${g.code} | ${g.where.join(', ') || 'the database'} | ${g.recommendation} |`,
    ),
    '',
    ...groupFindings(o.findings).flatMap((g) => [`- ${g.code}: ${g.evidence.join('; ')}`]),
    '',
    `## Database`,
    '',
    `${o.database.kind} PostgreSQL ${o.database.server_version}; pgvector installed: ${o.extension.installed_version ?? 'no'}, available: ${o.extension.available_version ?? 'no'}`,
    '',
    ...(o.memory ? renderMemory(o.memory) : []),
    '## Vector columns',
    '',
    '| column | type | rows | NULL | targeted |',
    '| --- | --- | --- | --- | --- |',
    ...o.vector_columns.map(
      (c) =>
        `| ${c.schema}.${c.table}.${c.column} | ${c.type}(${c.dimensions ?? '?'}) | ${n(c.rows)} | ${n(c.nulls)} | ${c.targeted ? 'yes' : 'no'} |`,
    ),
    '',
    ...o.targets
      .filter((t) => t.partitions.length)
      .flatMap((t) => [
        `### ${t.schema}.${t.table}: partitioned`,
        '',
        '| partition | rows | NULL |',
        '| --- | --- | --- |',
        ...t.partitions.map((p) => `| ${p.table} | ${n(p.rows)} | ${n(p.nulls)} |`),
        '',
      ]),
    '## Vector indexes',
    '',
    o.indexes.length === 0
      ? 'None.'
      : '| index | column | method | operator class | options | size | valid |\n| --- | --- | --- | --- | --- | --- | --- |',
    ...o.indexes.map(
      (i) =>
        `| ${i.name} | ${i.schema}.${i.table}.${i.column ?? '?'} | ${i.method} | ${i.opclass} | ${Object.entries(i.options)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')} | ${n(i.size_bytes)} B | ${i.valid ? 'yes' : '**no**'} |`,
    ),
    '',
    '## What writes embeddings',
    '',
    `- triggers that write the embedding column: ${o.writers.triggers.length ? o.writers.triggers.map((t) => `${t.table}: ${t.name}`).join('; ') : 'none'}`,
    `- the runner's queue: ${o.writers.queue ? `${n(o.writers.queue.pending)} pending (oldest ${Math.round(o.writers.queue.oldest_pending_seconds ?? 0)} s), ${n(o.writers.queue.failed)} failed` : 'not installed'}`,
    `- workers connected: ${o.writers.workers_connected}`,
    '',
    '## Where the stored vectors come from',
    '',
    '| column | model | embedded | by that model | by another | unknown origin | text changed since |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...o.targets.flatMap((t) =>
      t.origin
        ? [
            `| ${t.schema}.${t.table}.${t.column} | ${t.origin.model} | ${n(t.origin.embedded)} | ${n(t.origin.this_model)} | ${n(t.origin.other_model)} | ${n(t.origin.unknown)} | ${n(t.origin.stale)} |`,
          ]
        : [],
    ),
    '',
    '## What an embedding write would set off',
    '',
    o.side_effects.triggers.length === 0
      ? "No trigger of the application's fires on an UPDATE of the embedding columns."
      : `The application's triggers that an UPDATE of the embedding column fires (the runner ${o.side_effects.can_suppress_triggers ? 'may' : '**may not**'} keep them quiet with session_replication_role = replica; ENABLE ALWAYS and ENABLE REPLICA triggers fire regardless):`,
    '',
    ...o.side_effects.triggers.flatMap((t) => [
      `- \`${t.name}\` on ${t.table}, enabled ${t.enabled}, runs ${t.function} (${t.language}): \`${t.definition}\``,
      `  \`\`\`\n  ${t.source.trim().split('\n').slice(0, 6).join('\n  ')}\n  \`\`\``,
    ]),
    '',
    "## Who writes these tables, and what the runner's role sees",
    '',
    '| table | roles that write it (not the owner) | row-level security | rows with no text | materialized views over the column |',
    '| --- | --- | --- | --- | --- |',
    ...o.targets.map(
      (t) =>
        `| ${t.schema}.${t.table} | ${t.writer_roles.join(', ') || 'none'} | ${
          t.row_security
            ? `${t.row_security.forced ? 'forced' : 'enabled'} (${t.row_security.policies.join(', ') || 'no policy'})${t.row_security.hidden_from_runner.length ? `, **hides rows from ${o.privileges.role}**` : `, ${o.privileges.role} sees every row`}`
            : 'off'
        } | ${t.no_text} | ${t.materialized_views.map((v) => `${v.view} (\`${v.refresh}\`)`).join(', ') || 'none'} |`,
    ),
    '',
    '## Rights of the connected role',
    '',
    `Role ${o.privileges.role}; may create the runner's schema: ${o.privileges.can_create_runner_schema ? 'yes' : '**no**'}.`,
    '',
    '| table | owner | SELECT | UPDATE | TRIGGER |',
    '| --- | --- | --- | --- | --- |',
    ...o.privileges.tables.map(
      (t) =>
        `| ${t.table} | ${t.owner ? 'yes' : '**no**'} | ${t.select ? 'yes' : '**no**'} | ${t.update ? 'yes' : '**no**'} | ${t.trigger ? 'yes' : 'no'} |`,
    ),
    '',
    "## The application's search query (EXPLAIN ANALYZE)",
    '',
    ...o.query_plans.flatMap((q) => [`### ${q.table}.${q.column}: ${q.scan} scan, ${q.execution_ms.toFixed(1)} ms`, '', ...explained(q)]),
    ...(o.app_queries.length ? ["## The application's own queries (from the plan)", ''] : []),
    ...o.app_queries.flatMap((q) => [
      `### ${q.table} ${q.name}: ${q.scan} scan${q.index_name ? ` (${q.index_name})` : ''}, ${q.execution_ms.toFixed(1)} ms`,
      '',
      `${q.servable ? 'Servable' : '**Not servable by an index**'}: ${q.verdict}.`,
      '',
      ...explained(q),
    ]),
  ]
  if (o.source_references.length) {
    lines.push(
      '## Source references',
      '',
      ...o.source_references.map(
        (r) => `- \`${r.file}:${r.line}\` (${r.kind.replace(/_/g, ' ')}): \`${r.text.replace(/`/g, "'")}\`${r.note ? `: ${r.note}` : ''}`,
      ),
      '',
    )
  }
  return lines.join('\n')
}

/** A query and its EXPLAIN ANALYZE, as one code block. */
function explained(q: { sql: string; plan: string }): string[] {
  return ['```', q.sql, '', q.plan, '```', '']
}
