import { UsageError, WorkError } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'
import type { EmbeddingProvider } from './provider.ts'

/**
 * The plan's provider. `auto` takes openai when OPENAI_API_KEY is set and local on the
 * embedded demo database; against a real database without a key it stops, because writing
 * another model's embeddings into an application's columns by accident is worse than stopping.
 * Only the chosen provider's module is loaded (the OpenAI SDK and its tokenizer, or the word
 * vectors' loader): a command that embeds nothing loads neither.
 */
export async function createProvider(
  plan: Plan,
  targetKind: 'postgres' | 'embedded',
  log: (m: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  override?: 'local' | 'openai',
): Promise<EmbeddingProvider> {
  let choice = override ?? plan.embedding.provider
  if (choice === 'auto') {
    if (env.OPENAI_API_KEY) choice = 'openai'
    else if (targetKind === 'embedded') choice = 'local'
    else {
      throw new UsageError(
        'OPENAI_API_KEY is not set and the target is a real database: the runner will not write embeddings of another model into it by accident. ' +
          'Set OPENAI_API_KEY, or choose the offline provider explicitly (embedding.provider: local in the plan, or --provider local)',
      )
    }
  }
  if (choice === 'local') {
    log(`embedding provider: local (offline word vectors, ${plan.embedding.dimensions} dimensions; not ${plan.embedding.model})`)
    const { createLocalProvider } = await import('./localProvider.ts')
    return createLocalProvider({ dimensions: plan.embedding.dimensions })
  }
  const { createOpenAIProvider, requireOpenAIKey } = await import('./openaiProvider.ts')
  log(
    `embedding provider: openai ${plan.embedding.model} (${plan.embedding.dimensions} dimensions)${env.OPENAI_BASE_URL ? ` at ${env.OPENAI_BASE_URL}` : ''}`,
  )
  return createOpenAIProvider({
    model: plan.embedding.model,
    dimensions: plan.embedding.dimensions,
    apiKey: requireOpenAIKey(env),
    baseURL: env.OPENAI_BASE_URL,
    concurrency: plan.embedding.concurrency,
    maxInputsPerRequest: plan.embedding.batch_size,
    requestsPerMinute: plan.embedding.requests_per_minute,
    tokensPerMinute: plan.embedding.tokens_per_minute,
  })
}

/**
 * A session's provider, created once when first needed (by the preflight, which turns a
 * failure into a refusal) and then handed to the steps as it is.
 */
export function providerSlot(create: () => Promise<EmbeddingProvider>) {
  let provider: EmbeddingProvider | undefined
  let failure: unknown
  return {
    async load(): Promise<EmbeddingProvider> {
      if (!provider) {
        try {
          provider = await create()
        } catch (error) {
          failure = error
          throw error
        }
      }
      return provider
    },
    get(): EmbeddingProvider {
      if (provider) return provider
      throw failure ?? new WorkError('the embedding provider was not created before a batch that embeds (please report it)')
    },
  }
}
