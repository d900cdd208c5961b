import type { z } from 'zod'
import type { CriterionResult, CursorSpec } from '../checkpoint/session.ts'
import type { Database } from '../db/database.ts'
import type { Target } from '../db/target.ts'
import type { RunnerSchema } from '../db/runnerSchema/objects.ts'
import type { EmbeddingProvider } from '../embeddings/provider.ts'
import type { WritePolicy } from '../pipeline/writeEmbeddings.ts'
import type { Log } from '../log/log.ts'
import type { Progress } from '../log/progress.ts'
import type { Batch, Plan, StepName } from '../plan/schema.ts'
import type { StepOutputs } from './outputs.ts'

// A step does one batch's real work against the target database and returns a typed output,
// which is validated, saved, and handed to the batches that depend on it. A step may run more
// than once (a crash after the work but before the checkpoint), so it checks what already
// exists before it acts, and saves a cursor as it goes so a re-run continues partway.

export interface StepContext<Cursor = never> {
  /** The plan, with the command line's choices (--provider, --with-worker) applied. */
  plan: Plan
  batch: Batch
  /** For a read_only batch, this handle runs everything inside one READ ONLY transaction. */
  db: Database
  /** The plan's target tables, resolved against the database once for the whole batch. */
  targets: Target[]
  /** The runner's own schema in the target database. */
  runnerSchema: RunnerSchema
  /** How embeddings are written here (the application's triggers kept quiet or not), as the preflight found. */
  writes: WritePolicy
  /** Outputs of the batches this one depends on (directly or not), parsed once, by step name. */
  inputs: Partial<StepOutputs>
  progress: Progress
  /** The batch's cursor in the step's declared format (see Step.cursor). */
  checkpoint: {
    load(): Cursor | undefined
    save(cursor: Cursor): void
  }
  /** Aborted on SIGINT/SIGTERM: finish the current unit of work, save the cursor, throw Interrupted. */
  signal: AbortSignal
  /** The plan's embedding provider, created on first use (so batches that embed nothing need no key). */
  embeddings(): EmbeddingProvider
  /** Writes a file into this batch's folder (secrets redacted); returns its path in the session. */
  writeArtifact(name: string, content: string): string
  log: Log
}

export interface Step<Output = unknown, Cursor = never> {
  name: string
  output: z.ZodType<Output>
  /** The format of the cursor this step saves, versioned: a resume by a newer runner refuses a format it does not know. */
  cursor?: CursorSpec<Cursor>
  /** Steps whose output this one cannot do without: a plan whose batch does not depend on one is refused before anything runs. */
  needs?: StepName[]
  run(ctx: StepContext<Cursor>): Promise<Output>
  /** For --dry-run: what run would do on this database, read-only (statements, rows, costs). */
  preview?(ctx: StepContext<Cursor>): Promise<string[]>
  /** One line for coordination-state.json. */
  summarize(output: Output): string
  /** Markdown for the batch's report.md: the evidence, from the output only. */
  details(output: Output): string
  /** The success criteria this step measured, if it measures any. */
  criteria?(output: Output): CriterionResult[]
}

export type StepRegistry = ReadonlyMap<string, Step<any, any>>
