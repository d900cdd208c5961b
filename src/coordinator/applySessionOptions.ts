import type { SessionOptions } from '../checkpoint/sessionState.ts'
import type { Plan } from '../plan/schema.ts'

/**
 * The command line's choices are plan settings chosen for one session: --provider is
 * embedding.provider, --with-worker is validate.start_worker, --change-model is
 * embedding.change_model, --narrate is agents.narrate. Applied here once, so steps
 * read only the plan.
 */
export function applySessionOptions(plan: Plan, options: SessionOptions): Plan {
  return {
    ...plan,
    embedding: {
      ...plan.embedding,
      provider: options.provider ?? plan.embedding.provider,
      change_model: options.change_model || plan.embedding.change_model,
    },
    validate: { ...plan.validate, start_worker: options.with_worker || plan.validate.start_worker },
    agents: { ...plan.agents, narrate: options.narrate || plan.agents.narrate },
  }
}
