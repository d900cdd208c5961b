import { z } from 'zod'

// The plan a user writes (plans/*.yaml). Unknown keys are errors everywhere: a typo in a
// setting must not silently fall back to a default.

export const STEP_NAMES = ['diagnose', 'index', 'pipeline', 'backfill', 'validate'] as const
export type StepName = (typeof STEP_NAMES)[number]

export const DISTANCES = ['cosine', 'l2', 'inner_product'] as const
export type Distance = (typeof DISTANCES)[number]

const identifier = z.string().min(1, 'expected a non-empty name').max(63, 'PostgreSQL names are at most 63 bytes')
const batchId = z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'expected lowercase letters, digits, "-" or "_" (it names a folder)')

/** pgvector's search settings as the application sets them; unset ones are pgvector's defaults. */
const searchSettingsSchema = z.strictObject({
  ef_search: z.number().int().positive().max(1000).optional(),
  iterative_scan: z.enum(['off', 'relaxed_order']).optional(),
})

export const targetTableSchema = z.strictObject({
  schema: identifier.default('public'),
  table: identifier,
  /**
   * The column that finds each row, or the columns together (a table partitioned by time keyed
   * [id, sent_at]): the cursor, the queue, the metadata and every write use all of them.
   */
  key: z.union([identifier, z.array(identifier).min(1, 'expected at least one key column')]),
  text_columns: z.array(identifier).min(1, 'expected at least one column whose text is embedded'),
  embedding_column: identifier,
  distance: z.enum(DISTANCES),
  /**
   * Text columns that are not of a text type (jsonb, an enum, a number) and are embedded as
   * their text form on purpose. Any other non-text column in text_columns is refused.
   */
  cast_to_text: z.array(identifier).default([]),
  /**
   * The exact text embedded, from the text columns: "title: {title}\n\n{body}". Used the same
   * by the backfill, the capture's change detection, the worker and \`runner search\`, so the
   * runner's vectors are the ones the application's own writes would get. A NULL column is
   * empty. Unset: the text columns joined by a space.
   */
  /**
   * A column declared without dimensions (LangChain's \`vector\`): index_cast (the default)
   * indexes a cast to the model's length and changes nothing of the column; set_type types the
   * column vector(N) first (ALTER COLUMN ... TYPE: a rewrite of the table under ACCESS
   * EXCLUSIVE, whose duration the index batch measures and states first), so that the
   * application's queries need no cast. Refused when other lengths are stored.
   */
  untyped_column: z.enum(['index_cast', 'set_type']).default('index_cast'),
  text_template: z
    .string()
    .min(1)
    .refine((t) => /\{[^{}]+\}/.test(t), 'expected at least one {column} in the template')
    .optional(),
  /**
   * The searches the application runs on this table, as it writes them: $1 is the query vector,
   * $2... take the sample values in params (a topic, a tenant, a language). Diagnose explains
   * each; validate measures each as written (EXPLAIN, latency, recall against the exact answer
   * with the same filter) and recommends its settings. Without any, the plain nearest-10 query
   * is the one measured.
   */
  queries: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        sql: z
          .string()
          .min(1)
          .refine((sql) => /\$1(?!\d)/.test(sql), 'expected $1 for the query vector'),
        params: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).default([]),
        /** What the application sets where it runs this query, when it sets anything (else the table's, else the target's). */
        settings: searchSettingsSchema.optional(),
      }),
    )
    .default([]),
})
export type TargetTable = z.infer<typeof targetTableSchema>

const targetSchema = z.strictObject({
  database_url_env: z.string().min(1).default('DATABASE_URL'),
  embedded: z
    .strictObject({
      path: z.string().min(1).default('.runner/embedded'),
      demo_rows: z.number().int().positive().default(2000),
    })
    .prefault({}),
  runner_schema: identifier
    .refine((name) => !name.startsWith('pg_') && name !== 'information_schema', 'pg_* and information_schema are system schemas')
    .default('runner'),
  /**
   * The application's own triggers that an embedding write would fire (an updated_at stamp,
   * an audit row). The runner keeps them from firing (session_replication_role = replica in
   * its writing transaction); where the role may not, stop (the default) refuses before any
   * change and says how to grant it, and fire lets them fire, chosen on purpose.
   */
  application_triggers: z.enum(['stop', 'fire']).default('stop'),
  /**
   * The roles the application writes its tables as (usually not their owner). The capture is
   * proved as each of them; unset, every role with INSERT, UPDATE or DELETE on a target table.
   */
  application_roles: z.array(identifier).optional(),
  /**
   * How long a statement of the runner's that locks an application table (a trigger installed,
   * an index attached) may wait for its lock before it gives up and tries again, and how many
   * times it tries again: the application's queries queue behind a waiting lock, so it never waits long.
   */
  lock_timeout_ms: z.number().int().positive().max(60_000).default(2000),
  /**
   * What the application sets in its sessions for its searches (hnsw.ef_search,
   * hnsw.iterative_scan): validate judges every query at these, as the application runs it.
   * Unset: pgvector's defaults, which is what an application that sets nothing gets.
   */
  application_settings: searchSettingsSchema.optional(),
  lock_retries: z.number().int().min(0).max(100).default(5),
  /** The application's source folder: the diagnosis scans it for file:line references. */
  app_source: z.string().min(1).optional(),
  /** The application's Alembic setup: batch index writes its revision into versions_dir. */
  alembic: z
    .strictObject({
      versions_dir: z.string().min(1),
      /** Apply by running the application's `alembic upgrade head` instead of the runner's own SQL. */
      apply: z.boolean().default(false),
      /** alembic.ini; alembic runs in its folder. */
      ini: z.string().min(1).default('alembic.ini'),
      /** The application's alembic; default: a .venv (or venv) beside alembic.ini, else alembic on PATH. */
      command: z.string().min(1).optional(),
      /** Write the models' Index(...) declarations and env.py's filter into the application (else they are printed and reported). */
      patch: z.boolean().default(false),
      /** Run the application's `alembic check` after the indexes exist, and report it. */
      check: z.boolean().default(true),
      /** The pipeline batch writes the capture (schema, functions, triggers) as a revision too, so a database built by `alembic upgrade head` gets it. */
      capture_revision: z.boolean().default(false),
    })
    .optional(),
  /**
   * Tests for the application's own suite: validate writes them here (pytest), asserting what
   * it proved, and runs them with the application's pytest when one is found.
   */
  app_tests: z
    .strictObject({
      path: z.string().min(1).default('tests/test_vector_search.py'),
      framework: z.literal('pytest').default('pytest'),
      /** Run them after writing (with a .venv found beside or above the file, else python3). */
      run: z.boolean().default(true),
      /** The environment variable with the application role's URL to run them with (default: the runner's own URL). */
      database_url_env: z.string().min(1).optional(),
    })
    .optional(),
  tables: z.array(targetTableSchema).min(1, 'expected at least one table to fix'),
})

const embeddingSchema = z.strictObject({
  provider: z.enum(['auto', 'openai', 'local']).default('auto'),
  model: z.string().min(1),
  dimensions: z.number().int().positive().max(16000),
  batch_size: z.number().int().positive().max(2048).default(256),
  /** Requests in flight at once, and the account's limits (the x-ratelimit-* headers refine them). */
  concurrency: z.number().int().positive().max(64).default(4),
  requests_per_minute: z.number().int().positive().optional(),
  tokens_per_minute: z.number().int().positive().optional(),
  /** The backfill stops before it starts when its cost estimate is above this. */
  budget_usd: z.number().positive().optional(),
  /**
   * Vectors already in a target column with no record of the model that made them: reembed
   * (the default) embeds them again unless a sample proves they are the plan's model's;
   * keep leaves them as they are.
   */
  unknown_vectors: z.enum(['reembed', 'keep']).default('reembed'),
  /**
   * Bind columns already embedded by another model to this one, and embed their rows again:
   * the explicit act a change of model is (set for one session by --change-model).
   */
  change_model: z.boolean().default(false),
})

const workerSchema = z
  .strictObject({
    batch_size: z.number().int().positive().max(2048).default(64),
    /** A claimed job whose worker has not finished within this is taken over by another. */
    lease_seconds: z.number().int().positive().default(60),
    max_attempts: z.number().int().positive().default(5),
    /** The fallback poll when no NOTIFY arrives. */
    poll_ms: z.number().int().positive().default(1000),
    /**
     * How often a worker says it is alive and renews the leases of the jobs it holds. A worker
     * silent for three of these is taken for dead: its jobs are claimed by others at once.
     */
    heartbeat_seconds: z.number().positive().default(5),
    /**
     * Every this many seconds the worker sweeps the target tables, reconcile_batch rows at a
     * time by key, and queues rows whose embedding is NULL or whose recorded text hash no
     * longer matches their text: whatever bypassed the capture trigger (a COPY with triggers
     * off, rows written before the pipeline existed). null turns it off.
     */
    reconcile_seconds: z.number().positive().nullable().default(300),
    reconcile_batch: z.number().int().positive().max(100_000).default(5000),
  })
  .prefault({})

const backfillSchema = z
  .strictObject({
    /**
     * direct: this process embeds the rows and writes them. queue: it queues them, and every
     * registered worker, on any machine that reaches the database, drains the queue with the
     * worker's leases, model check and stale-write guard, while the batch waits and reports.
     */
    mode: z.enum(['direct', 'queue']).default('direct'),
    /** With mode queue: rows queued a statement, by key. */
    queue_chunk: z.number().int().positive().max(100_000).default(5000),
    /** With mode queue: how long the batch waits while rows are pending and no worker is alive before it stops (a resume waits again). */
    no_worker_seconds: z.number().positive().default(60),
  })
  .prefault({})

const indexSchema = z
  .strictObject({
    method: z.literal('hnsw').default('hnsw'),
    m: z.number().int().min(2).max(100).default(16),
    ef_construction: z.number().int().min(4).max(1000).default(64),
    max_maintenance_work_mem_mb: z.number().int().positive().default(4096),
    /**
     * full: the vectors as they are; half: a halfvec cast (half the size, up to 4,000 dims);
     * binary: binary_quantize to bits (32x smaller), its candidates re-ranked by the full vector.
     */
    precision: z.enum(['full', 'half', 'binary']).default('full'),
    /** With precision binary: rows the index returns per row asked for, re-ranked by the full vector. */
    rerank_factor: z.number().int().min(1).max(100).default(10),
    /** max_parallel_maintenance_workers for the build; the server's setting when not given. */
    parallel_workers: z.number().int().min(0).max(64).optional(),
    /**
     * How long a concurrent build may wait for transactions open before it started (a report, a
     * session left idle in a transaction). The wait holds up none of the application's queries;
     * past it the build stops, drops its unfinished index and names the transaction.
     */
    wait_for_transactions_seconds: z.number().positive().default(900),
    /** Replace an existing valid index that does not match (wrong operator class, wrong options). */
    replace_mismatched: z.boolean().default(false),
  })
  .prefault({})
  .refine((index) => index.ef_construction >= 2 * index.m, {
    message: 'pgvector needs ef_construction to be at least twice m',
    path: ['ef_construction'],
  })

// Each criterion can be switched off with null (for example relevance, for an application
// that has no labelled queries yet).
const criteriaSchema = z
  .strictObject({
    null_embeddings_max: z.number().int().min(0).nullable().default(0),
    hnsw_index_on_every_column: z.boolean().default(true),
    auto_embed_within_seconds: z.number().positive().nullable().default(10),
    relevance_recall_at_k: z
      .strictObject({ k: z.number().int().positive().default(5), min: z.number().min(0).max(1).default(0.5) })
      .nullable()
      .prefault({}),
    latency_p95_ms_max: z.number().positive().nullable().default(50),
    explain_uses_index: z.boolean().default(true),
  })
  .prefault({})

const validateSchema = z
  .strictObject({
    /** JSON: [{ query, table, relevant_ids }]. Unset: the demo's own labels for this target, when `runner demo init` or the embedded default wrote them. */
    labelled_queries: z.string().min(1).optional(),
    /** Query vectors for latency and recall, sampled from the table's own embeddings. */
    latency_queries: z.number().int().positive().max(10_000).default(100),
    /** Queries run as exact scans (each reads the whole table). */
    exact_queries: z.number().int().positive().max(1000).default(20),
    /** The recall@k the recommended hnsw.ef_search must reach. */
    recall_target: z.number().min(0).max(1).default(0.95),
    /** Latency at the recommended and the default setting is measured over this many rounds of every query vector; their p95s are the spread. */
    rounds: z.number().int().min(1).max(20).default(3),
    ef_search_candidates: z.array(z.number().int().positive().max(1000)).min(1).default([10, 20, 40, 64, 100, 200, 400]),
    /**
     * The auto-embedding check runs a worker of its own for its duration (--with-worker sets
     * it), instead of relying on `runner worker` processes already running. Always so on the
     * embedded database, which no other process can reach.
     */
    start_worker: z.boolean().default(false),
    /**
     * How the auto-embedding check proves the worker: requeue (the default) queues an existing
     * row again and writes nothing to the application's tables but its embedding; insert_row
     * inserts a probe row through the application's table (its triggers fire, its sequence
     * moves) and deletes it.
     */
    auto_embed_check: z.enum(['requeue', 'insert_row']).default('requeue'),
  })
  .prefault({})

const batchSchema = z.strictObject({
  id: batchId,
  title: z.string().min(1),
  agent: z.string().min(1),
  step: z.enum(STEP_NAMES),
  depends_on: z.array(batchId).default([]),
  scope: z.array(z.string()).default([]),
  guards: z
    .strictObject({
      /** The step runs inside a READ ONLY transaction. */
      read_only: z.boolean().default(false),
      /** The embedding columns' contents must be the same after the step as before. */
      writes_embeddings: z.boolean().default(true),
    })
    .prefault({}),
  not_to_do: z.array(z.string()).default([]),
  outputs: z.array(z.string()).default([]),
})
export type Batch = z.infer<typeof batchSchema>

export const planSchema = z
  .strictObject({
    id: batchId,
    title: z.string().min(1),
    priority: z.string().optional(),
    goal: z.string().optional(),
    target: targetSchema,
    embedding: embeddingSchema,
    index: indexSchema,
    worker: workerSchema,
    backfill: backfillSchema,
    validate: validateSchema,
    criteria: criteriaSchema,
    agents: z
      .strictObject({
        model: z.string().min(1).default('claude-sonnet-4-5'),
        /**
         * Each batch's agent adds a narrative written through the Anthropic API (needs
         * ANTHROPIC_API_KEY). Off unless chosen: it sends the batch's report (table names,
         * figures, EXPLAIN plans) to the API. --narrate turns it on for one session.
         */
        narrate: z.boolean().default(false),
      })
      .prefault({}),
    batches: z.array(batchSchema).min(1, 'expected at least one batch'),
  })
  .superRefine((plan, ctx) => {
    const seen = new Map<string, number>()
    plan.batches.forEach((batch, i) => {
      if (seen.has(batch.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['batches', i, 'id'],
          message: `duplicate batch id "${batch.id}" (also batches[${seen.get(batch.id)}])`,
        })
      }
      seen.set(batch.id, i)
    })
    plan.batches.forEach((batch, i) => {
      batch.depends_on.forEach((dep, j) => {
        if (!seen.has(dep)) {
          ctx.addIssue({
            code: 'custom',
            path: ['batches', i, 'depends_on', j],
            message: `unknown batch "${dep}"; the batches are: ${[...seen.keys()].join(', ')}`,
          })
        } else if (dep === batch.id) {
          ctx.addIssue({ code: 'custom', path: ['batches', i, 'depends_on', j], message: 'a batch cannot depend on itself' })
        }
      })
    })
    const tables = new Set<string>()
    plan.target.tables.forEach((t, i) => {
      for (const [, column] of (t.text_template ?? '').matchAll(/\{([^{}]+)\}/g)) {
        if (!t.text_columns.includes(column!))
          ctx.addIssue({
            code: 'custom',
            path: ['target', 'tables', i, 'text_template'],
            message: `{${column}} is not one of text_columns (${t.text_columns.join(', ')}): list it there`,
          })
      }
      const name = `${t.schema}.${t.table}`
      if (tables.has(name)) {
        ctx.addIssue({ code: 'custom', path: ['target', 'tables', i, 'table'], message: `table ${name} is listed twice` })
      }
      tables.add(name)
    })
  })
export type Plan = z.infer<typeof planSchema>

/** The plan's lock settings, as the statements that lock application tables take them. */
export function lockPolicy(plan: Plan): { timeoutMs: number; retries: number } {
  return { timeoutMs: plan.target.lock_timeout_ms, retries: plan.target.lock_retries }
}

/** A target table's key columns, one or several. */
export function keyColumnsOf(t: Pick<TargetTable, 'key'>): string[] {
  return typeof t.key === 'string' ? [t.key] : t.key
}
