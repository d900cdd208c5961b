import type { Batch } from '../plan/schema.ts'

// The batch's agent explains, in words, what its step's output means. It may not state
// numbers: the figures stay in the tables the template writes from output.json. A narrative
// that brings a number the measurements do not contain is refused, and so is one that cites a
// file:line of the application's source that the step did not read there itself.

export interface NarrativeRequest {
  batch: Batch
  summary: string
  details: string
  model: string
  apiKey: string
  baseURL?: string
}

/** Numbers as written in text: 1,234.5 / 0.93 / 12 / 12x (digits inside words such as p95 or ef_search_40 are names, not figures). */
function numbersIn(text: string): string[] {
  return (text.match(/(?<![\w.])\d[\d,]*(?:\.\d+)?(?=x\b|[^\w]|$)/g) ?? []).map((n) => n.replace(/,/g, ''))
}

export function inventedNumbers(narrative: string, measurements: string): string[] {
  const known = new Set(numbersIn(measurements))
  return [...new Set(numbersIn(narrative))].filter((n) => !known.has(n))
}

/** file:line citations (app/atoms.py:11) in a narrative that are not among the references the step read from the source. */
export function unfoundCitations(narrative: string, measurements: string): string[] {
  const cited = narrative.match(/[\w./-]+\.[A-Za-z]+:\d+/g) ?? []
  return [...new Set(cited)].filter((c) => !new RegExp(`(^|[\\s\`(])${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?!\\d)`).test(measurements))
}

export async function narrateWithAnthropic(request: NarrativeRequest): Promise<string> {
  // Loaded only when narration was chosen: the SDK is the largest thing a run would load for nothing.
  const { default: Anthropic } = await import('@anthropic-ai/sdk')
  const client = new Anthropic({ apiKey: request.apiKey, baseURL: request.baseURL, maxRetries: 2, timeout: 60_000 })
  const { batch } = request
  const message = await client.messages.create({
    model: request.model,
    max_tokens: 700,
    system:
      `You are the ${batch.agent} on a team fixing an application's pgvector semantic search. ` +
      'Write two or three short paragraphs for a reviewer: what this batch found or did, why it matters for the application, and what to watch next. ' +
      'Do not write any number, count, time or percentage: the measured figures appear in tables right below your text. ' +
      'Cite the application source only as file:line exactly as the batch lists it. Plain prose, no headings.',
    messages: [
      {
        role: 'user',
        content: `Batch "${batch.id}": ${batch.title}\nScope:\n${batch.scope.map((s) => `- ${s}`).join('\n')}\nNot to do:\n${batch.not_to_do.map((s) => `- ${s}`).join('\n')}\n\nResult: ${request.summary}\n\n${request.details}`,
      },
    ],
  })
  const text = message.content
    .flatMap((block) => (block.type === 'text' ? [block.text] : []))
    .join('\n')
    .trim()
  if (!text) throw new Error('the answer had no text')
  const measurements = `${request.summary}\n${request.details}`
  // Every place in the application's code the agent points at must be one the step read there.
  const unfound = unfoundCitations(text, measurements)
  if (unfound.length > 0)
    throw new Error(`the narrative cites ${unfound.slice(0, 5).join(', ')}, which the batch did not find in the application's source`)
  const invented = inventedNumbers(text, measurements)
  if (invented.length > 0)
    throw new Error(`the narrative stated numbers that are not in the measurements (${invented.slice(0, 5).join(', ')})`)
  return text
}
