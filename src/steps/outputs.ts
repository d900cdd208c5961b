import type { BackfillOutput } from './backfill/backfillStep.ts'
import type { DiagnoseOutput } from './diagnose/output.ts'
import type { IndexOutput } from './index/output.ts'
import type { PipelineOutput } from './pipeline/pipelineStep.ts'
import type { ValidateOutput } from './validate/output.ts'

/** What each step hands to the batches that depend on it, by step name. */
export interface StepOutputs {
  diagnose: DiagnoseOutput
  index: IndexOutput
  pipeline: PipelineOutput
  backfill: BackfillOutput
  validate: ValidateOutput
}
