import { z } from 'zod'
import { DISTANCES } from '../../plan/schema.ts'

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

export const vectorColumnSchema = z.object({
  schema: z.string(),
  table: z.string(),
  column: z.string(),
  type: z.enum(['vector', 'halfvec']),
  dimensions: z.number().int().nullable(),
  rows: z.number().int(),
  nulls: z.number().int(),
  targeted: z.boolean(),
})
export type VectorColumn = z.infer<typeof vectorColumnSchema>

export const vectorIndexSchema = z.object({
  schema: z.string(),
  table: z.string(),
  /** The indexed column, also when the index is on an expression over it (a halfvec cast). */
  column: z.string().nullable(),
  name: z.string(),
  method: z.string(),
  opclass: z.string(),
  options: z.record(z.string(), z.string()),
  size_bytes: z.number().int(),
  valid: z.boolean(),
  definition: z.string(),
})
export type VectorIndex = z.infer<typeof vectorIndexSchema>

export const queryPlanSchema = z.object({
  table: z.string(),
  column: z.string(),
  sql: z.string(),
  plan: z.string(),
  scan: z.enum(['index', 'sequential', 'other']),
  index_name: z.string().nullable(),
  execution_ms: z.number(),
})
export type QueryPlan = z.infer<typeof queryPlanSchema>

export const sourceReferenceSchema = z.object({
  file: z.string(),
  line: z.number().int(),
  kind: z.enum(['declares_vector_column', 'writes_embedding', 'calls_embedding_api', 'distance_query']),
  text: z.string(),
})
export type SourceReference = z.infer<typeof sourceReferenceSchema>

/** A target column as the later batches need it: resolved type and dimensions. */
export const targetColumnSchema = z.object({
  schema: z.string(),
  table: z.string(),
  key: z.string(),
  column: z.string(),
  text_columns: z.array(z.string()),
  distance: z.enum(DISTANCES),
  type: z.enum(['vector', 'halfvec']).nullable(),
  dimensions: z.number().int().nullable(),
  rows: z.number().int(),
  nulls: z.number().int(),
})
export type TargetColumn = z.infer<typeof targetColumnSchema>

export const diagnoseOutputSchema = z.object({
  database: z.object({ kind: z.enum(['postgres', 'embedded']), server_version: z.string() }),
  extension: z.object({ installed_version: z.string().nullable(), available_version: z.string().nullable() }),
  vector_columns: z.array(vectorColumnSchema),
  targets: z.array(targetColumnSchema),
  indexes: z.array(vectorIndexSchema),
  writers: z.object({
    triggers: z.array(z.object({ table: z.string(), name: z.string(), definition: z.string() })),
    queue: z.object({ pending: z.number().int(), oldest_pending_seconds: z.number().nullable(), failed: z.number().int() }).nullable(),
    workers_connected: z.number().int(),
  }),
  query_plans: z.array(queryPlanSchema),
  /** What the connected role may do that later batches need: per table, and for the runner's schema. */
  privileges: z.object({
    role: z.string(),
    can_create_runner_schema: z.boolean(),
    tables: z.array(z.object({ table: z.string(), owner: z.boolean(), select: z.boolean(), update: z.boolean(), trigger: z.boolean() })),
  }),
  source_references: z.array(sourceReferenceSchema),
  findings: z.array(findingSchema),
  root_cause: z.string(),
})
export type DiagnoseOutput = z.infer<typeof diagnoseOutputSchema>
