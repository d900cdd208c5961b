import { errorMessage } from '../errors.ts'
import type { Batch } from '../plan/schema.ts'
import { narrateWithAnthropic } from './narrateWithAnthropic.ts'

// The batch's agent (the role the plan names) writes report.md from the step's typed output:
// a deterministic template always, with a narrative through the Anthropic API when a key is
// set. Every number in the report comes from the output, never from the model.

export interface BatchReportInput {
  batch: Batch
  summary: string
  /** Markdown the step renders from its own output. */
  details: string
  startedAt: string
  endedAt: string
}

export function writeBatchReportFromTemplate(input: BatchReportInput, narrative?: string): string {
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
    ...(narrative ? [narrative, ''] : []),
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

/**
 * The narrative is sent for only when the plan chose it (agents.narrate, or --narrate): a key
 * in the environment alone sends nothing anywhere.
 */
export async function writeBatchReport(
  input: BatchReportInput,
  agents: { model: string; narrate: boolean },
  env: NodeJS.ProcessEnv = process.env,
  log: (m: string) => void = () => {},
): Promise<string> {
  const { model } = agents
  if (!agents.narrate) return writeBatchReportFromTemplate(input)
  const apiKey = env.ANTHROPIC_API_KEY
  if (!apiKey)
    return writeBatchReportFromTemplate(
      input,
      '_Narration was chosen, but ANTHROPIC_API_KEY is not set; this report is the deterministic template._',
    )
  try {
    const narrative = await narrateWithAnthropic({
      batch: input.batch,
      summary: input.summary,
      details: input.details,
      model,
      apiKey,
      baseURL: env.ANTHROPIC_BASE_URL,
    })
    return writeBatchReportFromTemplate(
      input,
      `## ${input.batch.agent}'s account\n\n_Written through the Anthropic API (${model}); the figures are in the sections below, from output.json._\n\n${narrative}`,
    )
  } catch (error) {
    const reason = errorMessage(error)
    log(`  the ${input.batch.agent} agent could not write through the Anthropic API (${reason}); report written from the template`)
    return writeBatchReportFromTemplate(
      input,
      `_The Anthropic API could not be used (${reason}); this report is the deterministic template._`,
    )
  }
}
