import { z } from 'zod'

// The shape of coordination-state.json and batch-progress.json, versioned. A session folder
// is read back by `runner resume`, possibly by a newer runner than the one that wrote it
// (an upgrade between a crash and the resume is the case resume exists for): every file is
// parsed against these schemas, older versions are upgraded in memory, unknown ones refused.

/** Version 2: the options a session started with; cursors carry their step's cursor version. */
export const STATE_VERSION = 2
export const READABLE_STATE_VERSIONS = [1, 2]

export const criterionResultSchema = z.object({
  id: z.string(),
  description: z.string(),
  threshold: z.string(),
  measured: z.string(),
  passed: z.boolean(),
  /** Not met only because something is still to be put in place (a worker to deploy): what. */
  pending: z.string().optional(),
})
export type CriterionResult = z.infer<typeof criterionResultSchema>

export const batchStatusSchema = z.enum(['pending', 'running', 'completed', 'failed', 'interrupted'])
export type BatchStatus = z.infer<typeof batchStatusSchema>

export const batchStateSchema = z.object({
  id: z.string(),
  title: z.string(),
  step: z.string(),
  agent: z.string(),
  status: batchStatusSchema,
  attempts: z.number().int(),
  started_at: z.string().optional(),
  ended_at: z.string().optional(),
  error: z.string().optional(),
  summary: z.string().optional(),
  /** Relative to the session folder. */
  output_path: z.string().optional(),
  report_path: z.string().optional(),
})
export type BatchState = z.infer<typeof batchStateSchema>

/** What the command line chose for the session; resume reapplies it unless told otherwise. */
export const sessionOptionsSchema = z.object({
  /** The provider the session embeds with: chosen on the command line, or recorded at its first use. */
  provider: z.enum(['local', 'openai']).optional(),
  with_worker: z.boolean().optional(),
  change_model: z.boolean().optional(),
  narrate: z.boolean().optional(),
  /** Stop after these batches (ids or steps; "each": after every batch) for a check-in; resume goes on. */
  pause_after: z.array(z.string()).optional(),
})
export type SessionOptions = z.infer<typeof sessionOptionsSchema>

export const checkInSchema = z.object({
  /** after: the batch completed, then the session stopped; before: the batch was declined at --confirm. */
  where: z.enum(['after', 'before']),
  batch: z.string(),
  paused_at: z.string(),
  /** The paused batch's summary (after), or what the declined batch would have done (before). */
  headline: z.string(),
  /** Who ran the resume that went on, and when. */
  went_on_by: z.string().optional(),
  went_on_at: z.string().optional(),
})
export type CheckIn = z.infer<typeof checkInSchema>

export const sessionStatusSchema = z.enum(['running', 'completed', 'failed', 'interrupted', 'paused'])
export type SessionStatus = z.infer<typeof sessionStatusSchema>

export const sessionStateSchema = z.object({
  version: z.literal(STATE_VERSION),
  session_id: z.string(),
  feature_id: z.string(),
  plan_path: z.string(),
  plan_sha256: z.string(),
  /** The target as shown (no password). */
  target: z.string().optional(),
  /** The target exactly (user@host:port/database, or the embedded folder): what resume compares. */
  target_fingerprint: z.string().optional(),
  options: sessionOptionsSchema,
  created_at: z.string(),
  updated_at: z.string(),
  status: sessionStatusSchema,
  batches: z.array(batchStateSchema),
  criteria: z.array(criterionResultSchema).optional(),
  /** Where the session stopped for a check-in (--pause-after, or a --confirm answered no), and who went on. */
  check_ins: z.array(checkInSchema).optional(),
})
export type SessionState = z.infer<typeof sessionStateSchema>

/** One batch's cursor, with the version of the step's cursor format that wrote it. */
export const progressEntrySchema = z.object({
  cursor_version: z.number().int(),
  cursor: z.unknown(),
  updated_at: z.string(),
})
export const progressSchema = z.record(z.string(), progressEntrySchema)
export type ProgressEntries = z.infer<typeof progressSchema>

/** Version 1 had no options and unversioned cursors; every step's cursor was at its version 1 then. */
export function upgradeState(raw: Record<string, unknown>, progress: Record<string, unknown>): { state: unknown; progress: unknown } {
  if (raw.version !== 1) return { state: raw, progress }
  const upgraded = Object.fromEntries(
    Object.entries(progress).map(([batch, entry]) => [batch, { cursor_version: 1, ...(entry as object) }]),
  )
  return { state: { ...raw, version: 2, options: {} }, progress: upgraded }
}
