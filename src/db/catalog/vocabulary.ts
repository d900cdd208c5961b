import { z } from 'zod'

// What the catalog reads are called everywhere: the diagnosis stores them in its output, the
// index and validate batches and `runner search` read them back. One definition each.

export const vectorTypeSchema = z.enum(['vector', 'halfvec'])
export type VectorType = z.infer<typeof vectorTypeSchema>

export const tableColumnSchema = z.object({
  name: z.string(),
  /** format_type(): vector(1536), character varying(200), bigint, uuid... */
  type: z.string(),
  /** pg_type.typname of the column's type, or of its domain's base type: text, varchar, vector. */
  base_type: z.string(),
  /** For vector and halfvec, the declared dimensions; -1 when none are declared. */
  typmod: z.number().int(),
  not_null: z.boolean(),
  has_default: z.boolean(),
  generated: z.boolean(),
})
export type TableColumn = z.infer<typeof tableColumnSchema>

export const vectorColumnSchema = z.object({
  schema: z.string(),
  table: z.string(),
  column: z.string(),
  type: vectorTypeSchema,
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

export const triggerSchema = z.object({ table: z.string(), name: z.string(), definition: z.string() })
export type Trigger = z.infer<typeof triggerSchema>

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

export const privilegesSchema = z.object({
  role: z.string(),
  can_create_runner_schema: z.boolean(),
  tables: z.array(z.object({ table: z.string(), owner: z.boolean(), select: z.boolean(), update: z.boolean(), trigger: z.boolean() })),
})
export type Privileges = z.infer<typeof privilegesSchema>

export const extensionSchema = z.object({ installed_version: z.string().nullable(), available_version: z.string().nullable() })
export type Extension = z.infer<typeof extensionSchema>
