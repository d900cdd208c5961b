import type { z } from 'zod'
import type { CriterionResult } from '../checkpoint/session.ts'
import type { Progress } from '../coordinator/progress.ts'
import type { Database } from '../db/database.ts'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import type { Batch, Plan, StepName } from '../plan/schema.ts'

// A step does one batch's real work against the target database and returns a typed output,
// which is validated, saved, and handed to the batches that depend on it. A step may run more
// than once (a crash after the work but before the checkpoint), so it checks what already
// exists before it acts, and saves a cursor as it goes so a re-run continues partway.

export interface StepContext {
  plan: Plan
  batch: Batch
  /** For a read_only batch, this handle runs everything inside one READ ONLY transaction. */
  db: Database
  /** Outputs of the batches this one depends on (directly or not), keyed by their step name. */
  inputs: Partial<Record<StepName, unknown>>
  progress: Progress
  checkpoint: {
    load<T>(): T | undefined
    save(cursor: unknown): void
  }
  /** Aborted on SIGINT/SIGTERM: finish the current unit of work, save the cursor, throw Interrupted. */
  signal: AbortSignal
  /** --with-worker: the validate batch runs a worker for the duration of its auto-embedding check. */
  withWorker: boolean
  /** The plan's embedding provider, created on first use (so batches that embed nothing need no key). */
  embeddings(): EmbeddingProvider
  /** Writes a file into this batch's folder (secrets redacted); returns its path in the session. */
  writeArtifact(name: string, content: string): string
  log(message: string): void
}

export interface Step<Output = unknown> {
  name: string
  output: z.ZodType<Output>
  run(ctx: StepContext): Promise<Output>
  /** One line for coordination-state.json. */
  summarize(output: Output): string
  /** Markdown for the batch's report.md: the evidence, from the output only. */
  details(output: Output): string
  /** The success criteria this step measured, if it measures any. */
  criteria?(output: Output): CriterionResult[]
}

export type StepRegistry = ReadonlyMap<string, Step<any>>

/** Reads a dependency's output, failing clearly when the plan did not make the batch depend on it. */
export function requireInput<T>(ctx: StepContext, step: StepName, schema: z.ZodType<T>): T {
  const value = ctx.inputs[step]
  if (value === undefined) {
    throw new Error(`batch ${ctx.batch.id} needs the output of a "${step}" batch; add it to depends_on in the plan`)
  }
  return schema.parse(value)
}
