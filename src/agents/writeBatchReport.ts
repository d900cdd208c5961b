import type { Batch } from '../plan/schema.ts'

// The batch's agent (the role the plan names) writes report.md from the step's typed output.
// This is the deterministic template; every number in it comes from the output.

export interface BatchReportInput {
  batch: Batch
  summary: string
  /** Markdown the step renders from its own output. */
  details: string
  startedAt: string
  endedAt: string
}

export function writeBatchReportFromTemplate(input: BatchReportInput): string {
  const { batch } = input
  const seconds = (Date.parse(input.endedAt) - Date.parse(input.startedAt)) / 1000
  const list = (items: string[]) => (items.length ? items.map((i) => `- ${i}`).join('\n') : '- (none)')
  return [
    `# Batch ${batch.id}: ${batch.title}`,
    '',
    `Agent: ${batch.agent} · step: \`${batch.step}\` · took ${seconds.toFixed(1)} s (${input.startedAt} to ${input.endedAt})`,
    '',
    `**Result:** ${input.summary}`,
    '',
    '## Scope',
    list(batch.scope),
    '',
    '## Guards',
    `- read only: ${batch.guards.read_only ? 'yes (ran in a READ ONLY transaction)' : 'no'}`,
    `- may write embeddings: ${batch.guards.writes_embeddings ? 'yes' : 'no (embedding counts checked before and after)'}`,
    ...batch.not_to_do.map((n) => `- not to do: ${n}`),
    '',
    input.details.trim(),
    '',
  ].join('\n')
}
