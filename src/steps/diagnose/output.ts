import { memorySettingsSchema } from '../validate/measureMemory.ts'
import { z } from 'zod'
import {
  extensionSchema,
  privilegesSchema,
  queryPlanSchema,
  triggerSchema,
  vectorColumnSchema,
  vectorIndexSchema,
  vectorTypeSchema,
} from '../../db/catalog/vocabulary.ts'
import { DISTANCES } from '../../plan/schema.ts'

export type { QueryPlan, VectorColumn, VectorIndex } from '../../db/catalog/vocabulary.ts'

// The diagnosis, as later batches consume it and as reviewers read it.

export const FINDING_CODES = [
  'EXTENSION_MISSING',
  'EXTENSION_OUTDATED',
  'TARGET_NOT_VECTOR',
  'NULL_EMBEDDINGS',
  'NO_VECTOR_INDEX',
  'INVALID_INDEX',
  'OPCLASS_MISMATCH',
  'DIMENSION_MISMATCH',
  'DIMENSIONS_NOT_INDEXABLE',
  'NO_EMBEDDING_WRITER',
  'QUEUE_BACKLOG',
  'FAILED_JOBS',
  'SEQUENTIAL_SCAN',
  'UNTARGETED_VECTOR_COLUMN',
  'MISSING_PRIVILEGES',
  'FOREIGN_EMBEDDINGS',
  'APPLICATION_TRIGGERS',
  'ROW_SECURITY_HIDES_ROWS',
  'MATERIALIZED_VIEW_COPIES',
  'ROWS_WITHOUT_TEXT',
  'UNTYPED_VECTOR_COLUMN',
  'APP_STORES_WITHOUT_EMBEDDING',
] as const

export const findingSchema = z.object({
  code: z.enum(FINDING_CODES),
  severity: z.enum(['error', 'warning', 'info']),
  table: z.string().optional(),
  column: z.string().optional(),
  evidence: z.string(),
  recommendation: z.string(),
})
export type Finding = z.infer<typeof findingSchema>

export const sourceReferenceSchema = z.object({
  file: z.string(),
  line: z.number().int(),
  kind: z.enum([
    'declares_vector_column',
    'writes_embedding',
    'commented_out_write',
    'calls_embedding_api',
    'uncalled_embedding_function',
    'create_without_embedding',
    'distance_query',
  ]),
  text: z.string(),
  /** What the line means, where the kind alone does not say (a function never called, a create path without an embedding). */
  note: z.string().optional(),
  /** The table of the model a create path stores, when its class names one (__tablename__). */
  table: z.string().optional(),
})
export type SourceReference = z.infer<typeof sourceReferenceSchema>

/** What the diagnosis measured of one target column. */
export const targetColumnSchema = z.object({
  schema: z.string(),
  table: z.string(),
  key: z.string(),
  column: z.string(),
  text_columns: z.array(z.string()),
  distance: z.enum(DISTANCES),
  type: vectorTypeSchema.nullable(),
  dimensions: z.number().int().nullable(),
  rows: z.number().int(),
  nulls: z.number().int(),
  /** Where the stored vectors come from, by the runner's metadata, against the model the column is bound to (or the plan's). */
  origin: z
    .object({
      model: z.string(),
      embedded: z.number().int(),
      this_model: z.number().int(),
      other_model: z.number().int(),
      unknown: z.number().int(),
      stale: z.number().int(),
    })
    .nullable(),
  /** A partitioned table: rows and NULL embeddings in each leaf partition that holds rows. */
  partitions: z.array(z.object({ table: z.string(), rows: z.number().int(), nulls: z.number().int() })).default([]),
  /** Of the NULL rows, those with no text to embed (every text column NULL or blank): left NULL on purpose. */
  no_text: z.number().int().default(0),
  /** The roles other than the owner that may INSERT, UPDATE or DELETE the table: the capture fires as them. */
  writer_roles: z.array(z.string()).default([]),
  /** Row-level security on the table, and the relations whose policies hide rows from the runner's role (its counts are then of what it sees). */
  row_security: z
    .object({ enabled: z.boolean(), forced: z.boolean(), policies: z.array(z.string()), hidden_from_runner: z.array(z.string()) })
    .nullable()
    .default(null),
  /** A column without dimensions of its own (vector, not vector(N)): the lengths of the vectors stored in it, and how many of each. */
  stored_dimensions: z
    .array(z.object({ dimensions: z.number().int(), model: z.string().nullable().default(null), rows: z.number().int() }))
    .nullable()
    .default(null),
  /** Materialized views that read the embedding column: they keep the old vectors until refreshed. */
  materialized_views: z.array(z.object({ view: z.string(), refresh: z.string() })).default([]),
})
export type TargetColumn = z.infer<typeof targetColumnSchema>

export const diagnoseOutputSchema = z.object({
  database: z.object({ kind: z.enum(['postgres', 'embedded']), server_version: z.string() }),
  extension: extensionSchema,
  vector_columns: z.array(vectorColumnSchema),
  targets: z.array(targetColumnSchema),
  indexes: z.array(vectorIndexSchema),
  writers: z.object({
    triggers: z.array(triggerSchema),
    queue: z.object({ pending: z.number().int(), oldest_pending_seconds: z.number().nullable(), failed: z.number().int() }).nullable(),
    workers_connected: z.number().int(),
  }),
  /** What an embedding write would set off in the application, and whether the runner may keep it quiet. */
  side_effects: z.object({
    can_suppress_triggers: z.boolean(),
    triggers: z.array(
      z.object({
        table: z.string(),
        name: z.string(),
        enabled: z.string(),
        function: z.string(),
        language: z.string(),
        source: z.string(),
        definition: z.string(),
      }),
    ),
  }),
  query_plans: z.array(queryPlanSchema),
  /** The application's own queries from the plan, explained, and whether an index can serve each. */
  app_queries: z
    .array(queryPlanSchema.extend({ name: z.string(), servable: z.boolean(), filtered: z.boolean(), verdict: z.string() }))
    .default([]),
  /** What the connected role may do that later batches need: per table, and for the runner's schema. */
  privileges: privilegesSchema,
  source_references: z.array(sourceReferenceSchema),
  findings: z.array(findingSchema),
  root_cause: z.string(),
  /**
   * The target columns' vector indexes (those there, and about the size of those the plan would
   * build) against the server's memory settings, and what to change; null on the embedded database.
   */
  memory: z
    .object({ settings: memorySettingsSchema, indexes_bytes: z.number(), planned_bytes: z.number(), advice: z.array(z.string()) })
    .nullable()
    .default(null),
})
export type DiagnoseOutput = z.infer<typeof diagnoseOutputSchema>
