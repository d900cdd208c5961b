import { createInterface } from 'node:readline/promises'
import { UsageError } from '../errors.ts'
import type { Batch } from '../plan/schema.ts'

/**
 * `--confirm`: before each batch that writes, the batch is named and the person at the terminal
 * answers. The question goes to stderr, so stdout still carries only the result. Without a
 * terminal there is no one to ask: refused, with the way to stop without one.
 */
export function confirmAtTerminal(input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin) {
  if (!input.isTTY)
    throw new UsageError('--confirm asks at a terminal, and stdin is not one; use --pause-after <batch> to stop between batches instead')
  return async (batch: Batch): Promise<boolean> => {
    const prompt = createInterface({ input, output: process.stderr })
    try {
      const answer = await prompt.question(`run batch ${batch.id} (${batch.step}): ${batch.title}? It writes to the database. [y/N] `)
      return /^y(es)?$/i.test(answer.trim())
    } finally {
      prompt.close()
    }
  }
}
