import { UsageError } from '../errors.ts'
import type { Plan } from '../plan/schema.ts'
import { createLocalProvider } from './localProvider.ts'
import { createOpenAIProvider, requireOpenAIKey } from './openaiProvider.ts'
import type { EmbeddingProvider } from './provider.ts'

/**
 * The plan's provider. `auto` takes openai when OPENAI_API_KEY is set and local on the
 * embedded demo database; against a real database without a key it stops, because writing
 * another model's embeddings into an application's columns by accident is worse than stopping.
 */
export function createProvider(
  plan: Plan,
  targetKind: 'postgres' | 'embedded',
  log: (m: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  override?: 'local' | 'openai',
): EmbeddingProvider {
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
    return createLocalProvider({ dimensions: plan.embedding.dimensions })
  }
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
