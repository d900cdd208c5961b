import { z } from 'zod'
import { criterionResultSchema } from '../../checkpoint/sessionState.ts'

const percentiles = z.object({ p50: z.number(), p95: z.number(), p99: z.number() })

export const tableValidationSchema = z.object({
  table: z.string(),
  column: z.string(),
  rows: z.number().int(),
  nulls: z.number().int(),
  index: z.object({
    name: z.string().nullable(),
    valid: z.boolean(),
    size_bytes: z.number().int(),
    shared_buffers_bytes: z.number().int(),
    fits_shared_buffers: z.boolean(),
    prewarmed: z.boolean(),
  }),
  explain: z.object({
    scan: z.enum(['index', 'sequential', 'other']),
    index_name: z.string().nullable(),
    forced_index_name: z.string().nullable(),
    execution_ms: z.number(),
  }),
  latency: z
    .object({
      queries: z.number().int(),
      exact_queries: z.number().int(),
      ef_search: z.number().int(),
      index: percentiles,
      exact: percentiles,
      speedup_p50: z.number(),
      sweep: z.array(z.object({ ef_search: z.number().int(), recall_at_10: z.number(), p50: z.number(), p95: z.number() })),
      recommended_ef_search: z.number().int(),
      recall_target_reached: z.boolean(),
    })
    .nullable(),
  relevance: z.object({ queries: z.number().int(), k: z.number().int(), recall_at_k: z.number(), mrr: z.number() }).nullable(),
  auto_embed: z
    .object({
      measured: z.boolean(),
      delay_ms: z.number().nullable(),
      reason: z.string().nullable(),
      method: z.enum(['requeue', 'insert_row']),
      /** A worker was there to embed (registered, or started for the check). */
      worker_running: z.boolean().default(true),
      /** The capture trigger proved on a rolled-back copy of the table (requeue only). */
      capture: z.object({ proved: z.boolean(), detail: z.string() }).nullable(),
    })
    .nullable(),
})
export type TableValidation = z.infer<typeof tableValidationSchema>

export const validateOutputSchema = z.object({
  database: z.enum(['postgres', 'embedded']),
  worker: z.string(),
  labelled_queries: z.string().nullable(),
  tables: z.array(tableValidationSchema),
  criteria: z.array(criterionResultSchema),
})
export type ValidateOutput = z.infer<typeof validateOutputSchema>
