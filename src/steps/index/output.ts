import { z } from 'zod'

// mismatch_reported: written by runners before the right index was built beside an unusable one; read, never written now.
export const indexActionSchema = z.enum(['created', 'kept', 'rebuilt', 'replaced', 'completed', 'mismatch_reported'])

export const builtIndexSchema = z.object({
  table: z.string(),
  column: z.string(),
  name: z.string(),
  action: indexActionSchema,
  /** Why this action: the existing index found, or what was wrong with it. */
  reason: z.string(),
  definition: z.string(),
  /** What queries must ORDER BY for the planner to use this index, and the query vector's type. */
  search: z.object({
    expression: z.string(),
    cast_type: z.string(),
    operator: z.string(),
    opclass: z.string(),
    /** The query vector's side of the ORDER BY; absent in outputs of runners before binary precision: $1::cast_type. */
    query: z.string().optional(),
    /** Binary precision: candidates re-ranked by the full vector. */
    rerank: z.object({ operator: z.string(), cast_type: z.string(), factor: z.number().int() }).optional(),
    /** A partial index's predicate, which the query must hold too (a column without dimensions: the plan's length). */
    where: z.string().optional(),
  }),
  concurrently: z.boolean(),
  maintenance_work_mem_mb: z.number().nullable(),
  estimated_graph_mb: z.number().nullable(),
  memory_capped_by: z.string().nullable(),
  parallel_workers: z.number().int().nullable(),
  /** Why the build ran without parallel workers (a pgvector release with the parallel-build overflow). */
  parallel_note: z.string().nullable().default(null),
  /** How to make the graph fit in memory, when the plan's cap or the machine left it too little. */
  memory_advice: z.string().nullable().default(null),
  build_seconds: z.number().nullable(),
  size_bytes: z.number().int(),
  /** Rows with an embedding when measured: HNSW does not index NULLs, so an index built before the backfill holds few. */
  rows_indexed: z.number().int(),
  valid: z.boolean(),
  listed_in_pg_indexes: z.boolean(),
  explain_scan: z.enum(['index', 'sequential', 'other']),
  explain_index: z.string().nullable(),
  query_ms_before: z.number().nullable(),
  query_ms_after: z.number(),
  /** A partitioned table: each leaf partition's index, attached to the one on the parent (reused: an earlier run's, attached as it was). */
  partitions: z
    .array(z.object({ table: z.string(), index: z.string(), reused: z.boolean(), valid: z.boolean(), size_bytes: z.number().int() }))
    .default([]),
  /** Indexes on the column that the application's query cannot use, left in place: every write still maintains them. */
  left_beside: z
    .array(
      z.object({
        name: z.string(),
        method: z.string(),
        opclass: z.string(),
        valid: z.boolean(),
        size_bytes: z.number().int(),
        scans: z.number(),
      }),
    )
    .default([]),
})
export type BuiltIndex = z.infer<typeof builtIndexSchema>

/** What the application's Alembic needs to agree with the indexes, and whether it does. */
export const alembicAgreementSchema = z.object({
  declarations: z.array(
    z.object({
      table: z.string(),
      index: z.string(),
      model: z.string().nullable(),
      file: z.string().nullable(),
      code: z.string().nullable(),
    }),
  ),
  /** The include_name (and include_object) functions env.py passes to context.configure. */
  env_filter: z.string(),
  /** Files of the application changed (alembic.patch). */
  patched: z.array(z.string()),
  /** The application's own `alembic check`, after the indexes exist. */
  check: z
    .object({ command: z.string(), exit_code: z.number().int(), passed: z.boolean(), unavailable: z.boolean(), output: z.string() })
    .nullable(),
})
export type AlembicAgreement = z.infer<typeof alembicAgreementSchema>

export const indexOutputSchema = z.object({
  indexes: z.array(builtIndexSchema),
  migrations: z.object({
    up_sql: z.string(),
    down_sql: z.string(),
    alembic_revision: z.string().nullable(),
    applied_with: z.enum(['runner', 'alembic']),
  }),
  alembic: alembicAgreementSchema.optional(),
})
export type IndexOutput = z.infer<typeof indexOutputSchema>
