import { bufferPassSchema, memorySettingsSchema } from './measureMemory.ts'
import { z } from 'zod'
import { knownItemsSchema } from './measureKnownItems.ts'
import { roleProofSchema } from './proveAsApplicationRoles.ts'
import { criterionResultSchema } from '../../checkpoint/sessionState.ts'
import { appTestsResultSchema } from './writeAppTests.ts'

const percentiles = z.object({ p50: z.number(), p95: z.number(), p99: z.number() })

const settingSchema = z.object({ ef_search: z.number().int(), iterative_scan: z.enum(['off', 'relaxed_order']) })
const scan = z.enum(['index', 'sequential', 'other'])

/** One setting measured: the planner's choice of scan there, and the answers' recall against the exact ones. */
const runSchema = percentiles.extend({
  setting: settingSchema,
  scan,
  index_name: z.string().nullable(),
  /** p95 of each round: how stable the pooled p95 is. */
  rounds_p95: z.array(z.number()),
  recall: z.number(),
})

export const queryMeasurementSchema = z.object({
  name: z.string(),
  sql: z.string(),
  limit: z.number().int(),
  queries: z.number().int(),
  exact_queries: z.number().int(),
  rounds: z.number().int(),
  /** A valid vector index on the column that this query can use (seen with sequential scans disabled). */
  index_usable: z.boolean(),
  /** The exact answers' latency (index scans disabled): the query without an index. */
  exact: percentiles,
  /** Every setting measured; empty when no index can serve the query. */
  sweep: z.array(
    settingSchema.extend({
      recall: z.number(),
      p50: z.number(),
      p95: z.number(),
      scan,
      index_name: z.string().nullable(),
      forced: z.boolean(),
    }),
  ),
  recommended: settingSchema.nullable(),
  recall_target_reached: z.boolean(),
  /** How the recommendation was chosen, or why there is none. */
  why: z.string(),
  /** The role the application's figures were measured as (SET ROLE); null: the runner's own. */
  measured_as: z.string().nullable().default(null),
  /**
   * What the application gets as it runs the query today: at its own settings (the plan's
   * application_settings, else pgvector's defaults: ef_search 40, no iterative scan), as its role,
   * on fresh statistics. The criteria are judged here.
   */
  at_default: runSchema,
  /** What it would get with the recommendation applied (the statements in apply), measured the same way. */
  at_recommended: runSchema.nullable(),
  apply: z.array(z.string()),
})
export type QueryMeasurement = z.infer<typeof queryMeasurementSchema>

export const tableValidationSchema = z.object({
  table: z.string(),
  column: z.string(),
  rows: z.number().int(),
  /** Rows with a NULL embedding, and of those the rows with no text to embed (left NULL on purpose, not a gap in coverage). */
  nulls: z.number().int(),
  no_text: z.number().int().default(0),
  index: z.object({
    name: z.string().nullable(),
    opclass: z.string().nullable().default(null),
    valid: z.boolean(),
    size_bytes: z.number().int(),
    shared_buffers_bytes: z.number().int(),
    fits_shared_buffers: z.boolean(),
    prewarmed: z.boolean(),
  }),
  /** The nearest-10 query under EXPLAIN (ANALYZE, BUFFERS) before any warm-up and warm: where its pages came from (measureMemory.ts). */
  buffers: z.object({ first_pass: bufferPassSchema, warm: bufferPassSchema }).nullable().default(null),
  explain: z.object({
    scan: z.enum(['index', 'sequential', 'other']),
    index_name: z.string().nullable(),
    forced_index_name: z.string().nullable(),
    execution_ms: z.number(),
  }),
  /** A partitioned table: rows and NULL embeddings in each leaf partition that holds rows. */
  partitions: z.array(z.object({ table: z.string(), rows: z.number().int(), nulls: z.number().int() })).default([]),
  /** The plain nearest-10 query, ordered by the index's expression. */
  latency: queryMeasurementSchema.nullable(),
  /** The application's own queries from the plan, each measured as written. */
  app_queries: z.array(queryMeasurementSchema).default([]),
  relevance: z.object({ queries: z.number().int(), k: z.number().int(), recall_at_k: z.number(), mrr: z.number() }).nullable(),
  /** Relevance without labels: rows searched by a part of their own text, and the model checked against the stored vectors. */
  known_items: knownItemsSchema.nullable().default(null),
  auto_embed: z
    .object({
      measured: z.boolean(),
      delay_ms: z.number().nullable(),
      reason: z.string().nullable(),
      method: z.enum(['requeue', 'insert_row']),
      /** A worker was there to embed (registered, or started for the check). */
      worker_running: z.boolean().default(true),
      /**
       * A \`runner worker\` outlives this run: one is registered, or the database is the embedded
       * one (no other process can reach it). A worker started for the check alone is not one.
       */
      deployed_worker: z.boolean().default(true),
      /** The capture trigger proved on a rolled-back copy of the table (requeue only). */
      capture: z.object({ proved: z.boolean(), detail: z.string() }).nullable(),
      /** The capture proved as each role the application writes as (the requeue check only). */
      capture_roles: z.array(roleProofSchema).default([]),
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
  /** The tests written into the application's suite (target.app_tests), and their run. */
  app_tests: appTestsResultSchema.nullable().default(null),
  /** The server's memory settings against the vector indexes' total size, and what to change (never changed by the runner). */
  memory: z
    .object({ settings: memorySettingsSchema, indexes_bytes: z.number(), advice: z.array(z.string()) })
    .nullable()
    .default(null),
})
export type ValidateOutput = z.infer<typeof validateOutputSchema>
