import { diagnoseStep } from './diagnose/diagnoseStep.ts'
import { backfillStep } from './backfill/backfillStep.ts'
import { indexStep } from './index/indexStep.ts'
import { pipelineStep } from './pipeline/pipelineStep.ts'
import { validateStep } from './validate/validateStep.ts'
import type { Step, StepRegistry } from './step.ts'

// The steps this build implements, keyed by the plan's `step:` name. Only real steps live here.
const STEPS: Step<any, any>[] = [diagnoseStep, indexStep, pipelineStep, backfillStep, validateStep]

export function defaultRegistry(): StepRegistry {
  return new Map(STEPS.map((s) => [s.name, s]))
}
