import { UsageError } from '../errors.ts'
import { dependenciesOf } from '../plan/orderBatches.ts'
import type { Plan } from '../plan/schema.ts'
import type { StepRegistry } from '../steps/step.ts'

/**
 * Before anything touches a database: every batch names a step this build has, and every
 * step that cannot do without another's output depends on a batch of that step.
 */
export function checkPlanRunnable(plan: Plan, registry: StepRegistry): void {
  const problems: string[] = []
  for (const [i, batch] of plan.batches.entries()) {
    const step = registry.get(batch.step)
    if (!step) {
      problems.push(`batches[${i}].step: this runner has no step "${batch.step}"; it implements: ${[...registry.keys()].join(', ')}`)
      continue
    }
    const provided = new Set(dependenciesOf(batch, plan.batches).map((b) => b.step))
    for (const needed of step.needs ?? []) {
      if (!provided.has(needed))
        problems.push(`batches[${i}].depends_on: batch ${batch.id} (${batch.step}) needs the output of a "${needed}" batch`)
    }
  }
  if (problems.length) throw new UsageError(`the plan cannot run:\n  ${problems.join('\n  ')}`)
}
