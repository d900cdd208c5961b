import { readFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import type { DiagnoseOutput } from '../src/steps/diagnose/output.ts'
import type { IndexOutput } from '../src/steps/index/output.ts'
import { estimateGraphMb } from '../src/steps/index/sizeBuildMemory.ts'
import type { ValidateOutput } from '../src/steps/validate/output.ts'
import { DIMS } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { connectPostgres } from '../src/db/connectPostgres.ts'
import pg from 'pg'
import { chainedBatches, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// Production shapes on the real server: a table partitioned by time, indexes already on the
// column that the application's query cannot use, a failed build's leftover, and the index
// batch's migration applied to another copy of the same broken database.

const TOPICS = ['pgvector indexes', 'queue workers', 'search latency', 'embedding models']

/** "Event Log".notes, partitioned by month of created_at, PRIMARY KEY (id, created_at), with the application's updated_at trigger on the parent. */
async function createPartitionedApp(db: Database, partitions: string[]) {
  await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; CREATE SCHEMA "Event Log";
    CREATE TABLE "Event Log".notes (id bigint GENERATED ALWAYS AS IDENTITY, created_at timestamptz NOT NULL, body text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT '2020-01-01', embedding vector(${DIMS}), PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
    CREATE FUNCTION "Event Log".touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER set_updated_at BEFORE UPDATE ON "Event Log".notes FOR EACH ROW EXECUTE FUNCTION "Event Log".touch()`)
  for (const month of partitions) await addMonth(db, month)
  await db.exec(`INSERT INTO "Event Log".notes (created_at, body)
    SELECT '${partitions[0]}-01'::timestamptz + (g % ${partitions.length}) * interval '1 month' + g * interval '1 minute',
           'note ' || g || ' about ' || (ARRAY[${TOPICS.map((t) => `'${t}'`).join(', ')}])[1 + g % 4]
    FROM generate_series(1, 300) g`)
}

async function addMonth(db: Database, month: string) {
  const next = new Date(`${month}-01T00:00:00Z`)
  next.setUTCMonth(next.getUTCMonth() + 1)
  await db.exec(`CREATE TABLE "Event Log"."notes_${month.replace('-', '_')}" PARTITION OF "Event Log".notes
    FOR VALUES FROM ('${month}-01') TO ('${next.toISOString().slice(0, 10)}')`)
}

function partitionedPlan(extra: Record<string, unknown> = {}) {
  return {
    id: 'production-shapes',
    title: 'Production shapes',
    target: {
      tables: [
        { schema: 'Event Log', table: 'notes', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' },
      ],
    },
    embedding: { provider: 'local', model: 'text-embedding-3-small', dimensions: DIMS, batch_size: 64 },
    worker: { poll_ms: 100 },
    validate: { latency_queries: 20, exact_queries: 10 },
    criteria: { relevance_recall_at_k: null },
    batches: chainedBatches('diagnose', 'index', 'pipeline', 'backfill', 'validate'),
    ...extra,
  }
}

/** Every index on the application's tables as the catalog has it: name, validity and definition. */
async function indexesOf(db: Database) {
  const { rows } = await db.query<{ name: string; valid: boolean; definition: string; parent: string | null }>(
    `SELECT i.relname AS name, ix.indisvalid AS valid, pg_get_indexdef(i.oid) AS definition,
            (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = i.oid) AS parent
     FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema', 'runner') ORDER BY 1`,
  )
  return rows
}

describe.skipIf(!serverUrl)('production shapes (real server)', () => {
  const targets: TestTarget[] = []
  let db: Database
  let url: string
  const dir = tempDir()

  beforeEach(async () => {
    const target = await createServerDatabase()
    targets.push(target)
    url = target.url!
    db = await target.open()
  })
  afterEach(async () => {
    await db?.close()
    for (const t of targets.splice(0)) await t.drop()
  })

  const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { env: { DATABASE_URL: url, ...env } })
  const sessionOf = (sessions: string) => join(sessions, sessionFolders(sessions)[0]!)
  const output = <T>(session: string, batch: string) =>
    JSON.parse(readFileSync(join(session, 'batches', batch, 'output.json'), 'utf8')) as T

  it('a table partitioned by time: each partition indexed concurrently and attached, every row embedded, later partitions captured', async () => {
    await createPartitionedApp(db, ['2026-01', '2026-02', '2026-03'])
    // The application's own index on one partition: not the runner's to attach (a later drop of the parent's index would take it along).
    await db.exec(`CREATE INDEX app_january ON "Event Log"."notes_2026_01" USING hnsw (embedding vector_cosine_ops)`)
    const updatedBefore = (await db.query(`SELECT id, updated_at::text FROM "Event Log".notes ORDER BY id`)).rows
    const sessions = join(dir, 'sessions-partitioned')
    const planPath = writePlan(dir, partitionedPlan(), 'partitioned.yaml')
    const started = await run(['start', planPath, '--with-worker', '--sessions-dir', sessions])
    expect(started.exitCode, started.all).toBe(3) // fixed; the worker started for the check is not a deployed one
    const session = sessionOf(sessions)

    const index = output<IndexOutput>(session, '02-index').indexes[0]!
    expect(index).toMatchObject({ name: 'notes_embedding_hnsw', action: 'created', valid: true, explain_index: 'notes_embedding_hnsw' })
    expect(index.partitions.map((p) => [p.table, p.index, p.valid])).toEqual([
      ['Event Log.notes_2026_01', 'notes_2026_01_embedding_hnsw', true],
      ['Event Log.notes_2026_02', 'notes_2026_02_embedding_hnsw', true],
      ['Event Log.notes_2026_03', 'notes_2026_03_embedding_hnsw', true],
    ])
    expect(index.size_bytes).toBe(index.partitions.reduce((s, p) => s + p.size_bytes, 0))
    const { rows: appIndex } = await db.query<{ attached: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = '"Event Log".app_january'::regclass) AS attached`,
    )
    expect(appIndex).toEqual([{ attached: false }])
    const up = readFileSync(join(session, 'batches/02-index/migration.up.sql'), 'utf8')
    expect(up).toContain('CREATE INDEX IF NOT EXISTS "notes_embedding_hnsw" ON ONLY "Event Log"."notes"')
    expect(
      up.match(/CREATE INDEX CONCURRENTLY IF NOT EXISTS "notes_2026_0\d_embedding_hnsw" ON "Event Log"."notes_2026_0\d"/g),
    ).toHaveLength(3)
    expect(up.match(/ALTER INDEX "Event Log"."notes_embedding_hnsw" ATTACH PARTITION/g)).toHaveLength(3)

    // Backfilled partition by partition, each with a position of its own in the checkpoint.
    const progress = JSON.parse(readFileSync(join(session, 'batch-progress.json'), 'utf8'))
    expect(Object.keys(progress.backfill.cursor.after)).toEqual(
      ['01', '02', '03'].map((m) => `Event Log.notes "Event Log"."notes_2026_${m}"`),
    )
    const months = ['01', '02', '03'].map((m) => `Event Log.notes_2026_${m}`)
    const diagnosed = output<DiagnoseOutput>(session, '01-diagnose').targets[0]!.partitions
    expect(diagnosed).toEqual(months.map((table) => ({ table, rows: 100, nulls: 100 })))
    const validate = output<ValidateOutput>(session, '05-validate').tables[0]!
    expect(validate).toMatchObject({ rows: 300, nulls: 0 })
    expect(validate.partitions).toEqual(months.map((table) => ({ table, rows: 100, nulls: 0 })))
    // The application queries the parent: a Merge Append of the partitions' index scans, under the parent index's name.
    expect(validate.explain.forced_index_name).toBe('notes_embedding_hnsw')
    // The backfill fired none of the application's triggers.
    expect((await db.query(`SELECT id, updated_at::text FROM "Event Log".notes ORDER BY id`)).rows).toEqual(updatedBefore)

    // A partition created after the pipeline was installed: the parent's triggers cover it, and its index is the parent's.
    await addMonth(db, '2026-04')
    await db.exec(`INSERT INTO "Event Log".notes (created_at, body) VALUES ('2026-04-15', 'a new note about queue workers')`)
    const { rows: queued } = await db.query(`SELECT row_key FROM runner.embedding_queue`)
    expect(queued).toHaveLength(1)
    const worker = await run(['worker', planPath, '--until-empty'])
    expect(worker.exitCode, worker.all).toBe(0)
    const { rows: april } = await db.query<{ embedded: boolean }>(
      `SELECT embedding IS NOT NULL AS embedded FROM "Event Log"."notes_2026_04"`,
    )
    expect(april).toEqual([{ embedded: true }])
    // A partition attached later gets an index of its own, attached to the parent's (PostgreSQL does it): still valid.
    const { rows: valid } = await db.query<{ valid: boolean }>(
      `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = '"Event Log".notes_embedding_hnsw'::regclass`,
    )
    expect(valid).toEqual([{ valid: true }])
  })

  it('refuses a key unique only with the partition key when its values are not generated, or repeat', async () => {
    await db.exec(`CREATE EXTENSION vector; CREATE SCHEMA "Event Log";
      CREATE TABLE "Event Log".notes (id bigint NOT NULL, created_at timestamptz NOT NULL, body text, embedding vector(${DIMS}),
        PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
      CREATE TABLE "Event Log".notes_a PARTITION OF "Event Log".notes FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
      CREATE TABLE "Event Log".notes_b PARTITION OF "Event Log".notes FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
      INSERT INTO "Event Log".notes VALUES (1, '2026-01-05', 'one'), (1, '2026-02-05', 'one again'), (2, '2026-02-06', 'two')`)
    const planPath = writePlan(dir, partitionedPlan(), 'keys.yaml')
    const manual = await run(['start', planPath, '--dry-run'])
    expect(manual.exitCode, manual.all).toBe(2)
    expect(manual.all).toContain('target.tables[0].key: Event Log.notes.id is unique only together with the partition key (')
    expect(manual.all).toContain('its values are not drawn from an identity, a sequence or a random uuid')

    await db.exec(`CREATE SEQUENCE "Event Log".ids; ALTER TABLE "Event Log".notes ALTER COLUMN id SET DEFAULT nextval('"Event Log".ids')`)
    const repeated = await run(['start', planPath, '--dry-run'])
    expect(repeated.exitCode, repeated.all).toBe(2)
    expect(repeated.all).toContain('and 1 value(s) occur on more than one row')

    await db.exec(`UPDATE "Event Log".notes SET id = 3 WHERE body = 'one again'`)
    const accepted = await run(['start', planPath, '--dry-run'])
    expect(accepted.exitCode, accepted.all).toBe(0)
  })

  it('migrations reproduce exactly what the batch did on another copy of the same broken database, and down undoes them', async () => {
    // The broken database: a time-partitioned table, a plain table with an L2 IVFFlat under a
    // cosine plan (replaced, as the plan says), and a third with a failed build's leftover.
    const brokenApp = async (d: Database) => {
      await createPartitionedApp(d, ['2026-01', '2026-02', '2026-03'])
      await d.exec(`CREATE TABLE public.docs (id bigint PRIMARY KEY, body text, embedding vector(${DIMS}));
        INSERT INTO public.docs SELECT g, 'doc ' || g FROM generate_series(1, 50) g;
        CREATE INDEX docs_ivf_l2 ON public.docs USING ivfflat (embedding vector_l2_ops) WITH (lists = 2);
        CREATE TABLE public.faqs (id bigint PRIMARY KEY, body text, embedding vector(${DIMS}));
        INSERT INTO public.faqs SELECT g, 'faq ' || g FROM generate_series(1, 50) g;
        CREATE INDEX faqs_embedding_hnsw ON public.faqs USING hnsw (embedding vector_cosine_ops);
        UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.faqs_embedding_hnsw'::regclass`)
    }
    await brokenApp(db)
    const copy = await createServerDatabase()
    targets.push(copy)
    const copyDb = await copy.open()
    try {
      await brokenApp(copyDb)
      const original = await indexesOf(copyDb)
      const plan = partitionedPlan({ index: { replace_mismatched: true } })
      plan.target.tables.push(
        { schema: 'public', table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' },
        { schema: 'public', table: 'faqs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' },
      )
      plan.batches = plan.batches.slice(0, 2)
      const sessions = join(dir, 'sessions-migrations')
      const ran = await run(['start', writePlan(dir, plan, 'migrations.yaml'), '--sessions-dir', sessions])
      expect(ran.exitCode, ran.all).toBe(0)
      const folder = join(sessionOf(sessions), 'batches/02-index')
      const actions = output<IndexOutput>(sessionOf(sessions), '02-index').indexes.map((i) => [i.table, i.action])
      expect(actions).toEqual([
        ['Event Log.notes', 'created'],
        ['public.docs', 'replaced'],
        ['public.faqs', 'rebuilt'],
      ])
      const batchResult = await indexesOf(db)
      expect(batchResult.map((i) => i.name)).not.toContain('docs_ivf_l2')
      expect(batchResult.every((i) => i.valid)).toBe(true)

      const psql = (file: string) =>
        execa('psql', [copy.url!, '-v', 'ON_ERROR_STOP=1', '-q', '-f', join(folder, file)], { reject: false, all: true })
      const up = await psql('migration.up.sql')
      expect(up.exitCode, up.all).toBe(0)
      expect(await indexesOf(copyDb)).toEqual(batchResult)

      const down = await psql('migration.down.sql')
      expect(down.exitCode, down.all).toBe(0)
      // Back to the broken state, less the failed build's leftover (garbage, not recreated).
      expect(await indexesOf(copyDb)).toEqual(original.filter((i) => i.name !== 'faqs_embedding_hnsw'))
    } finally {
      await copyDb.close()
    }
  })

  /** 30,000 rows of 16 dimensions, enough for the planner to choose HNSW; 1 row in 100 belongs to the tenant 'rare'. */
  async function createTenantDocs(d: Database) {
    await d.exec(`CREATE EXTENSION IF NOT EXISTS vector;
      CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant text NOT NULL, body text NOT NULL, embedding vector(${DIMS}));
      INSERT INTO docs (tenant, body, embedding) SELECT CASE WHEN g % 100 = 0 THEN 'rare' ELSE 'common' END, 'doc ' || g,
        (SELECT array_agg(sin(g * 7.1 + k * 1.3))::vector FROM generate_series(1, ${DIMS}) k) FROM generate_series(1, 30000) g;
      ANALYZE docs`)
  }
  const docsTable = {
    schema: 'public',
    table: 'docs',
    key: 'id',
    text_columns: ['body'],
    embedding_column: 'embedding',
    distance: 'cosine',
  }
  const byTenant = `SELECT id FROM docs WHERE tenant = $2 ORDER BY embedding <=> $1::vector(${DIMS}) LIMIT 10`

  it("measures the application's filtered query as written: recall collapses without iterative scan, and the recommendation restores it", async () => {
    await createTenantDocs(db)
    const plan = partitionedPlan({
      validate: { latency_queries: 30, exact_queries: 10, rounds: 2 },
      // Latency is asserted below as a comparison within this run, not against a fixed threshold.
      criteria: { relevance_recall_at_k: null, auto_embed_within_seconds: null, latency_p95_ms_max: null },
    })
    plan.target.tables = [{ ...docsTable, queries: [{ name: 'by tenant', sql: byTenant, params: ['rare'] }] }] as any
    plan.batches = chainedBatches('diagnose', 'index', 'validate') as any
    const sessions = join(dir, 'sessions-filtered')
    const ran = await run(['start', writePlan(dir, plan, 'filtered.yaml'), '--sessions-dir', sessions])
    expect(ran.exitCode, ran.all).toBe(0)
    // Diagnose explained the query before any index: a scan today, servable by an index, filtered.
    const diagnosed = output<DiagnoseOutput>(sessionOf(sessions), '01-diagnose').app_queries
    expect(diagnosed.map((q) => [q.name, q.scan, q.servable, q.filtered])).toEqual([['by tenant', 'sequential', true, true]])
    expect(diagnosed[0]!.verdict).toContain('hnsw.iterative_scan')
    const table = output<ValidateOutput>(sessionOf(sessions), '03-validate').tables[0]!

    // The plain nearest-10: a setting at or above its LIMIT, at which the planner uses the index
    // (and either side of it); the application's own (pgvector's default, 40) when it already
    // reaches the target, else a step above the smallest that did.
    const nearest = table.latency!
    expect(nearest.index_usable).toBe(true)
    const recommended = nearest.recommended!
    expect(recommended.ef_search).toBeGreaterThanOrEqual(10)
    const plain = nearest.sweep.filter((p) => p.iterative_scan === 'off' && !p.forced)
    const indexAt = (ef: number) => plain.find((p) => p.ef_search === ef)?.index_name !== null
    const candidates = [10, 20, 40, 64, 100, 200, 400]
    const stable = (ef: number) => {
      const i = candidates.indexOf(ef)
      return indexAt(ef) && (i === 0 || indexAt(candidates[i - 1]!)) && (i === candidates.length - 1 || indexAt(candidates[i + 1]!))
    }
    const reached = plain.filter((p) => p.recall >= 0.95 && stable(p.ef_search) && p.ef_search >= 10).map((p) => p.ef_search)
    const smallest = Math.min(...reached)
    expect(recommended.ef_search).toBe(
      reached.includes(40) ? 40 : (candidates.find((c) => c > smallest && reached.includes(c)) ?? smallest),
    )
    // Checked here, independently: at the recommended setting the planner's own plan is the index scan.
    const explained = await db.withSession(async (session) => {
      await session.query(`SET hnsw.ef_search = ${recommended.ef_search}`)
      const { rows } = await session.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT id FROM docs ORDER BY embedding <=> (SELECT embedding FROM docs WHERE id = 7) LIMIT 10`,
      )
      return rows.map((r) => r['QUERY PLAN']).join('\n')
    })
    expect(explained).toMatch(/Index Scan using docs_embedding_hnsw on docs/)
    expect(nearest.at_recommended!.scan).toBe('index')
    expect(nearest.at_recommended!.rounds_p95).toHaveLength(2)

    // The filtered query: the plain scan returns at most ef_search rows before the filter, nearly none of them 'rare'.
    const q = table.app_queries[0]!
    expect(q.name).toBe('by tenant')
    const plainAt40 = q.sweep.find((p) => p.ef_search === 40 && p.iterative_scan === 'off' && !p.forced)!
    expect(plainAt40.recall).toBeLessThan(0.5)
    expect(q.at_default.recall).toBeLessThan(0.5) // what the application gets today, at pgvector's defaults
    expect(q.recommended).toMatchObject({ iterative_scan: 'relaxed_order' })
    expect(q.at_recommended!.recall).toBeGreaterThanOrEqual(0.95)
    // Recall restored costs time: the iterative scan reads far more of the graph than the exact answer reads rows here, and the runner says so.
    expect(q.at_recommended!.p95).toBeGreaterThan(q.exact.p95)
    expect(q.why).toContain('the exact answer (index scans off) was faster here')
    expect(q.apply).toEqual([`SET LOCAL hnsw.ef_search = ${q.recommended!.ef_search}`, 'SET LOCAL hnsw.iterative_scan = relaxed_order'])
    // Applied here as the report says (in the query's transaction), the query returns its ten rows again.
    const rowsWith = async (statements: string[]) =>
      db.transaction(async (session) => {
        for (const statement of statements) await session.query(statement)
        const vector = (await session.query<{ v: string }>('SELECT embedding::text AS v FROM docs WHERE id = 7')).rows[0]!.v
        return (await session.query(byTenant, [vector, 'rare'])).rows.length
      })
    expect(await rowsWith([])).toBeLessThan(10)
    expect(await rowsWith(q.apply)).toBe(10)
    const report = readFileSync(join(sessionOf(sessions), 'batches/03-validate/report.md'), 'utf8')
    expect(report).toContain('SET LOCAL hnsw.iterative_scan = relaxed_order')
  })

  it('claims no recall or ef_search for a column without an index the query can use', async () => {
    await createTenantDocs(db)
    await db.exec(`CREATE INDEX docs_ivf_l2 ON docs USING ivfflat (embedding vector_l2_ops) WITH (lists = 10)`)
    const plan = partitionedPlan({
      validate: { latency_queries: 10, exact_queries: 5, rounds: 2 },
      criteria: {
        relevance_recall_at_k: null,
        auto_embed_within_seconds: null,
        hnsw_index_on_every_column: false,
        explain_uses_index: false,
      },
    })
    plan.target.tables = [docsTable] as any
    plan.batches = chainedBatches('validate') as any
    const sessions = join(dir, 'sessions-no-index')
    const ran = await run(['start', writePlan(dir, plan, 'no-index.yaml'), '--sessions-dir', sessions])
    expect(ran.all).not.toContain('recall 1.000')
    const nearest = output<ValidateOutput>(sessionOf(sessions), '01-validate').tables[0]!.latency!
    expect(nearest).toMatchObject({ index_usable: false, sweep: [], recommended: null, at_recommended: null, apply: [] })
    expect(nearest.why).toContain('no recall or ef_search is claimed')
    expect(nearest.at_default.scan).toBe('sequential')
    expect(output<ValidateOutput>(sessionOf(sessions), '01-validate').tables[0]!.index.prewarmed).toBe(false)
    const report = readFileSync(join(sessionOf(sessions), 'batches/01-validate/report.md'), 'utf8')
    expect(report).toContain('not claimed')
    expect(report).not.toMatch(/\| 10 \| off \|/) // no sweep rows
  })

  it("proves auto-embedding without inserting into or deleting from the application's tables, or moving their sequences", async () => {
    await createPartitionedApp(db, ['2026-01', '2026-02', '2026-03'])
    const planPath = writePlan(dir, partitionedPlan(), 'counters.yaml')
    expect((await run(['start', planPath, '--sessions-dir', join(dir, 'sessions-counters-1')])).exitCode).toBe(3)
    const counters = async () => {
      await db.query('SELECT pg_stat_force_next_flush()')
      const { rows } = await db.query<{ relname: string; ins: number; upd: number; del: number }>(
        `SELECT relname, n_tup_ins::int AS ins, n_tup_upd::int AS upd, n_tup_del::int AS del FROM pg_stat_user_tables
         WHERE schemaname = 'Event Log' ORDER BY relname`,
      )
      await db.query('SELECT pg_stat_clear_snapshot()')
      const sequence = await db.query<{ last: string }>(`SELECT last_value::text AS last FROM "Event Log".notes_id_seq`)
      return { rows, sequence: sequence.rows[0]!.last }
    }
    const snapshot = async () => (await db.query(`SELECT id, created_at, body, updated_at FROM "Event Log".notes ORDER BY id`)).rows
    const before = await counters()
    const rowsBefore = await snapshot()
    // The validate batch again, with a worker of its own: the check by requeue.
    const again = partitionedPlan()
    again.batches = chainedBatches('validate') as any
    const checked = await run([
      'start',
      writePlan(dir, again, 'counters-2.yaml'),
      '--with-worker',
      '--sessions-dir',
      join(dir, 'sessions-counters-2'),
    ])
    expect(checked.exitCode, checked.all).toBe(3) // fixed; the worker started for the check is not a deployed one
    const after = await counters()
    expect(after.sequence).toBe(before.sequence)
    expect(after.rows.map((r) => [r.relname, r.ins, r.del])).toEqual(before.rows.map((r) => [r.relname, r.ins, r.del]))
    // One row's embedding written again, and nothing else of any row changed.
    const updates = (c: typeof before) => c.rows.reduce((s, r) => s + r.upd, 0)
    expect(updates(after) - updates(before)).toBe(1)
    expect(await snapshot()).toEqual(rowsBefore)
  })

  it("compares the indexes with the server's memory settings, measures where the search's pages come from, and recommends only what the numbers show", async () => {
    await createTenantDocs(db)
    const plan = partitionedPlan({
      validate: { latency_queries: 20, exact_queries: 10, rounds: 1, ef_search_candidates: [40] },
      criteria: { relevance_recall_at_k: null, auto_embed_within_seconds: null, latency_p95_ms_max: null },
    })
    plan.target.tables = [docsTable] as any
    plan.batches = chainedBatches('diagnose', 'index', 'validate') as any
    const validate = async (name: string) => {
      const sessions = join(dir, `sessions-memory-${name}`)
      const ran = await run(['start', writePlan(dir, plan, `memory-${name}.yaml`), '--sessions-dir', sessions])
      expect(ran.exitCode, ran.all).toBe(0)
      const session = sessionOf(sessions)
      return { ran, session, o: output<ValidateOutput>(session, '03-validate'), diagnosed: output<DiagnoseOutput>(session, '01-diagnose') }
    }
    const { o, diagnosed } = await validate('fits')
    // Before the index exists, diagnose counts the one the plan would build, at the index batch's own estimate of its graph.
    expect(diagnosed.memory!.indexes_bytes).toBe(0)
    expect(diagnosed.memory!.planned_bytes).toBe(estimateGraphMb(30_000, DIMS, 4, 16) * 1024 * 1024)
    expect(diagnosed.memory!.advice).toEqual([])
    const sharedBuffers = Number((await db.query(`SELECT pg_size_bytes(current_setting('shared_buffers')) AS b`)).rows[0]!.b)
    expect(o.memory!.settings.shared_buffers_bytes).toBe(sharedBuffers)
    expect(o.memory!.settings.machine_bytes).toBe(totalmem()) // the server runs on this machine
    expect(o.memory!.indexes_bytes).toBe(o.tables[0]!.index.size_bytes)
    expect(o.memory!.indexes_bytes).toBeGreaterThan(0)
    // A small index in shared_buffers: warm, every page a search touches is found there.
    const buffers = o.tables[0]!.buffers!
    expect(buffers.first_pass.queries).toBe(20)
    expect(buffers.warm.hit_blocks).toBeGreaterThan(0)
    expect(buffers.warm.read_blocks).toBe(0)
    expect(o.memory!.advice).toEqual([])

    // The planner told that less memory caches the data than the index takes (the database's own setting): said, with what to set.
    await db.exec(`ALTER DATABASE ${pg.escapeIdentifier(new URL(url).pathname.slice(1))} SET effective_cache_size = '64kB'`)
    const { ran, session, o: told, diagnosed: toldBefore } = await validate('small-cache')
    // Diagnose, with the index there now, says the same before anything is changed.
    expect(toldBefore.memory!.indexes_bytes).toBe(o.tables[0]!.index.size_bytes)
    expect(toldBefore.memory!.advice[0]).toMatch(/^effective_cache_size \(64 kB\)/)
    expect(told.memory!.settings.effective_cache_size_bytes).toBe(64 * 1024)
    expect(told.memory!.advice).toHaveLength(1)
    expect(told.memory!.advice[0]).toMatch(
      /^effective_cache_size \(64 kB\) tells the planner less memory caches the data than the vector indexes take/,
    )
    expect(told.memory!.advice[0]).toMatch(/Recommended: effective_cache_size = [\d.]+ [kMG]B or more/)
    expect(ran.all).toMatch(/memory: effective_cache_size/)
    expect(readFileSync(join(session, 'batches/03-validate/report.md'), 'utf8')).toMatch(/## Memory[\s\S]*- effective_cache_size/)
  })

  it('measures a binary-quantized index against the full vectors, and re-ranking more candidates recovers recall', async () => {
    await createTenantDocs(db)
    const recallWith = async (factor: number) => {
      const plan = partitionedPlan({
        index: { precision: 'binary', rerank_factor: factor },
        validate: { latency_queries: 40, exact_queries: 40, rounds: 1, ef_search_candidates: [40, 100] },
        criteria: { relevance_recall_at_k: null, auto_embed_within_seconds: null, latency_p95_ms_max: null },
      })
      plan.target.tables = [docsTable] as any
      plan.batches = chainedBatches('index', 'validate') as any
      const sessions = join(dir, `sessions-binary-${factor}`)
      const ran = await run(['start', writePlan(dir, plan, `binary-${factor}.yaml`), '--sessions-dir', sessions])
      expect(ran.exitCode, ran.all).toBe(0)
      const nearest = output<ValidateOutput>(sessionOf(sessions), '02-validate').tables[0]!.latency!
      expect(nearest.sweep.filter((p) => !p.forced).every((p) => p.index_name === 'docs_embedding_hnsw_binary')).toBe(true)
      // The index must hand over 10 x factor candidates: that LIMIT is swept when the plan's candidates stop short of it,
      // and nothing below it is recommended.
      expect(nearest.limit).toBe(10 * factor)
      expect(nearest.sweep.some((p) => p.ef_search >= 10 * factor)).toBe(true)
      expect(nearest.recommended?.ef_search).toBeGreaterThanOrEqual(10 * factor)
      return Math.max(...nearest.sweep.map((p) => p.recall))
    }
    // 16 bits cannot order 30,000 rows: the Hamming order alone misses most of the true nearest
    // (against the Hamming order itself it would look perfect); 50 candidates a row re-ranked recover them.
    const alone = await recallWith(1)
    const reranked = await recallWith(50)
    expect(alone).toBeLessThan(0.6)
    expect(reranked).toBeGreaterThan(alone + 0.2)
  })

  it('refuses before any change, as a role that is not a superuser, a partitioned table with a partition it does not own', async () => {
    const owner = `runner_owner_${process.pid}`
    const other = `runner_other_${process.pid}`
    const admin = await connectPostgres(serverUrl!)
    try {
      await admin.exec(`DROP ROLE IF EXISTS ${owner}; DROP ROLE IF EXISTS ${other}; CREATE ROLE ${owner} LOGIN; CREATE ROLE ${other};
        GRANT SET ON PARAMETER session_replication_role TO ${owner}`)
      await db.exec(`GRANT CREATE ON DATABASE ${pg.escapeIdentifier(new URL(url).pathname.slice(1))} TO ${owner}`)
      await createPartitionedApp(db, ['2026-01', '2026-02', '2026-03'])
      await db.exec(`ALTER SCHEMA "Event Log" OWNER TO ${owner}; ALTER TABLE "Event Log".notes OWNER TO ${owner};
        ALTER TABLE "Event Log".notes_2026_01 OWNER TO ${owner}; ALTER TABLE "Event Log".notes_2026_02 OWNER TO ${owner};
        ALTER TABLE "Event Log".notes_2026_03 OWNER TO ${other}`)
      const asOwner = new URL(url)
      asOwner.username = owner
      const refused = await run(
        ['start', writePlan(dir, partitionedPlan(), 'not-owner.yaml'), '--sessions-dir', join(dir, 'sessions-not-owner')],
        {
          DATABASE_URL: asOwner.toString(),
        },
      )
      expect(refused.exitCode, refused.all).toBe(2)
      expect(refused.stderr).toContain('on a partitioned table, of every partition')
      // Nothing was built or installed: no index on any partition, no runner schema.
      const { rows } = await db.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%hnsw%') + (SELECT count(*) FROM pg_namespace WHERE nspname = 'runner'))::int AS n`,
      )
      expect(rows).toEqual([{ n: 0 }])
    } finally {
      await db.exec(`REASSIGN OWNED BY ${owner}, ${other} TO postgres; DROP OWNED BY ${owner}, ${other}`)
      await admin.exec(`DROP ROLE IF EXISTS ${owner}; DROP ROLE IF EXISTS ${other}`)
      await admin.close()
    }
  })
})
