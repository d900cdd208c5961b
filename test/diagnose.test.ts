import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { OWNERSHIP_NEEDED } from '../src/db/catalog/readPrivileges.ts'
import { connectPostgres } from '../src/db/connectPostgres.ts'
import type { Database } from '../src/db/database.ts'
import { initDemo } from '../src/demo/initDemo.ts'
import { diagnoseStep } from '../src/steps/diagnose/diagnoseStep.ts'
import { judgeQuery } from '../src/steps/diagnose/judgeQuery.ts'
import { scanSource } from '../src/appSource/scanSource.ts'
import type { DiagnoseOutput } from '../src/steps/diagnose/output.ts'
import { createTarget, serverUrl, targetKinds, type TestTarget } from './helpers/databases.ts'
import { testPlan } from './helpers/plans.ts'
import { runInProcess } from './helpers/runInProcess.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'

const registry = new Map([['diagnose', diagnoseStep]])
const shipped = loadPlan('plans/feature-1.yaml').plan

/** The shipped plan's targets with only its diagnose batch. */
function demoDiagnosePlan() {
  return {
    ...testPlan(),
    target: { tables: shipped.target.tables },
    embedding: { model: 'text-embedding-ada-002', dimensions: 1536 },
    batches: [shipped.batches[0]],
  }
}

/** A plan for the hand-made table docs(id, body, embedding). */
function docsPlan(change: (p: ReturnType<typeof testPlan>) => void = () => {}) {
  const plan = testPlan()
  plan.target.tables = [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
  plan.embedding = { provider: 'local', model: 'local', dimensions: 8 }
  plan.batches = [
    { id: 'diagnose', title: 'Diagnose', agent: 'vector-search-engineer', step: 'diagnose', guards: { read_only: true } } as any,
  ]
  change(plan)
  return plan
}

const codes = (o: DiagnoseOutput, table: string) => o.findings.filter((f) => f.table === table).map((f) => f.code)

describe.each(targetKinds)('diagnose on %s', (kind) => {
  let target: TestTarget
  let db: Database
  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  describe("judges an application's query by the plan PostgreSQL makes of it, not by its text", () => {
    beforeAll(async () => {
      await db.exec(`CREATE EXTENSION IF NOT EXISTS vector;
        CREATE TABLE shape_tenants (id int PRIMARY KEY, name text);
        CREATE TABLE shape_docs (id int PRIMARY KEY, tenant int, title text, embedding vector(3))`)
    })
    afterAll(() => db.exec('DROP TABLE shape_docs; DROP TABLE shape_tenants'))
    const cases: [string, string, unknown[], boolean, boolean, string][] = [
      [
        'ORDER BY distance LIMIT k',
        'SELECT id FROM shape_docs ORDER BY embedding <=> $1 LIMIT 10',
        [],
        true,
        false,
        'an index can serve it',
      ],
      [
        'ordered by an alias, as LlamaIndex, LangChain and SQLAlchemy write it',
        'SELECT id, embedding <=> $1 AS distance FROM shape_docs ORDER BY distance LIMIT 2',
        [],
        true,
        false,
        'an index can serve it',
      ],
      [
        'a cast, a join and a filter',
        'SELECT d.id, d.embedding::vector(3) <=> $1::vector(3) AS distance FROM shape_docs d JOIN shape_tenants t ON t.id = d.tenant WHERE t.name = $2 ORDER BY distance LIMIT 5',
        ['acme'],
        true,
        true,
        'hnsw.iterative_scan',
      ],
      [
        'with a filter',
        'SELECT id FROM shape_docs WHERE tenant = $2 ORDER BY embedding <=> $1 LIMIT 10',
        [7],
        true,
        true,
        'hnsw.iterative_scan',
      ],
      [
        'a distance threshold in WHERE',
        'SELECT id FROM shape_docs WHERE embedding <=> $1 < 0.3',
        [],
        false,
        true,
        'a distance compared in WHERE reads every row',
      ],
      [
        'another distance than the plan',
        'SELECT id FROM shape_docs ORDER BY embedding <-> $1 LIMIT 10',
        [],
        false,
        false,
        'orders by <-> (l2)',
      ],
      ['no LIMIT', 'SELECT id FROM shape_docs ORDER BY embedding <=> $1', [], false, false, 'without a LIMIT'],
      ['not a vector search', 'SELECT id FROM shape_docs WHERE title = $1::text', [], false, true, 'does not order by a vector distance'],
    ]
    it.each(cases)('%s', async (_name, sql, params, servable, filtered, verdict) => {
      const first = sql.includes('title = $1') ? 'a title' : '[1,2,3]'
      const shape = await judgeQuery(db, sql, [first, ...params], 'cosine')
      expect([shape.servable, shape.filtered]).toEqual([servable, filtered])
      expect(shape.verdict).toContain(verdict)
    })

    it('says when an index serves it already', async () => {
      await db.exec(`INSERT INTO shape_docs SELECT g, g % 3, 't' || g, array[g, 1, 1]::vector FROM generate_series(1, 50) g;
        CREATE INDEX shape_docs_hnsw ON shape_docs USING hnsw (embedding vector_cosine_ops)`)
      const served = await db.transaction(async (tx) => {
        await tx.exec('SET LOCAL enable_seqscan = off')
        return judgeQuery(tx, 'SELECT id, embedding <=> $1 AS distance FROM shape_docs ORDER BY distance LIMIT 2', ['[1,2,3]'], 'cosine')
      })
      expect(served).toMatchObject({ servable: true, filtered: false })
      expect(served.verdict).toContain('the index shape_docs_hnsw serves it now')
    })
  })

  describe('the demo app in its broken state', () => {
    let output: DiagnoseOutput
    beforeAll(async () => {
      await initDemo(db, 500)
      const result = await runInProcess(demoDiagnosePlan(), db, registry)
      expect(result.status).toBe('completed')
      output = result.outputs.diagnose
    })

    it('counts every row and NULL exactly', () => {
      expect(output.targets.map((t) => [t.table, t.type, t.dimensions, t.rows, t.nulls])).toEqual([
        ['atoms', 'vector', 1536, 300, 300],
        ['messages', 'vector', 1536, 200, 200],
        ['topics', 'vector', 1536, 40, 40],
      ])
      expect(output.indexes).toEqual([])
      expect(output.writers).toEqual({ triggers: [], queue: null, workers_connected: 0 })
    })

    it('names the missing writer, the missing index and the sequential scan', () => {
      for (const table of ['public.atoms', 'public.messages', 'public.topics']) {
        expect(codes(output, table)).toEqual(['NULL_EMBEDDINGS', 'NO_VECTOR_INDEX', 'NO_EMBEDDING_WRITER', 'SEQUENTIAL_SCAN'])
      }
      expect(output.query_plans.map((q) => q.scan)).toEqual(['sequential', 'sequential', 'sequential'])
      expect(output.query_plans[0]!.plan).toMatch(/Seq Scan on atoms/)
      expect(output.root_cause).toBe(
        'public.atoms.embedding (0 of 300 embedded), public.messages.embedding (0 of 200 embedded), public.topics.embedding (0 of 40 embedded): ' +
          'embeddings are missing because nothing writes the column: no trigger, no queue, no worker; there is no vector index; so every search is a sequential scan.',
      )
    })
  })

  describe('hand-made broken databases', () => {
    beforeEach(async () => {
      await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; DROP TABLE IF EXISTS docs;
        CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(8));
        INSERT INTO docs (id, body) SELECT g, 'doc ' || g FROM generate_series(1, 10) g;`)
    })
    const diagnose = async (plan = docsPlan()) => (await runInProcess(plan, db, registry)).outputs.diagnose as DiagnoseOutput

    it('reports a half-filled column as a warning with its counts', async () => {
      await db.exec(`UPDATE docs SET embedding = '[1,0,0,0,0,0,0,0]' WHERE id <= 5`)
      const o = await diagnose()
      expect(o.findings.find((f) => f.code === 'NULL_EMBEDDINGS')).toMatchObject({
        severity: 'warning',
        evidence: '5 of 10 rows of public.docs have an embedding (5 NULL)',
      })
    })

    it('reports an invalid index and does not call the column unindexed', async () => {
      await db.exec(`CREATE INDEX docs_embedding_idx ON docs USING hnsw (embedding vector_cosine_ops);
        UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'docs_embedding_idx'::regclass;`)
      const o = await diagnose()
      expect(o.indexes).toMatchObject([
        { name: 'docs_embedding_idx', column: 'embedding', method: 'hnsw', opclass: 'vector_cosine_ops', valid: false },
      ])
      expect(codes(o, 'public.docs')).toContain('INVALID_INDEX')
      expect(codes(o, 'public.docs')).not.toContain('NO_VECTOR_INDEX')
      expect(o.root_cause).toContain('the vector index is invalid')
    })

    it('reports an index whose operator class serves another distance', async () => {
      await db.exec(`CREATE INDEX docs_l2 ON docs USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32)`)
      const o = await diagnose()
      expect(o.indexes[0]).toMatchObject({ opclass: 'vector_l2_ops', options: { m: '8', ef_construction: '32' } })
      const mismatch = o.findings.find((f) => f.code === 'OPCLASS_MISMATCH')!
      expect(mismatch.evidence).toBe(
        'index docs_l2 uses vector_l2_ops (l2), but the application queries public.docs.embedding with cosine (<=>): the planner cannot use it',
      )
      expect(codes(o, 'public.docs')).toContain('NO_VECTOR_INDEX')
    })

    it('finds the column of a half-precision expression index', async () => {
      await db.exec(`CREATE INDEX docs_half ON docs USING hnsw ((embedding::halfvec(8)) halfvec_cosine_ops)`)
      const o = await diagnose()
      expect(o.indexes[0]).toMatchObject({ name: 'docs_half', column: 'embedding', opclass: 'halfvec_cosine_ops', valid: true })
      expect(codes(o, 'public.docs')).not.toContain('NO_VECTOR_INDEX')
    })

    it("reports a column whose dimensions differ from the model's", async () => {
      const o = await diagnose(docsPlan((p) => (p.embedding.dimensions = 16)))
      expect(o.findings.find((f) => f.code === 'DIMENSION_MISMATCH')!.evidence).toBe(
        'public.docs.embedding is vector(8) but the model local gives 16 dimensions',
      )
    })

    it('reports a vector column too wide for an HNSW index on vector', async () => {
      await db.exec(`DROP TABLE docs; CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(3072))`)
      const o = await diagnose(docsPlan((p) => (p.embedding.dimensions = 3072)))
      expect(o.findings.find((f) => f.code === 'DIMENSIONS_NOT_INDEXABLE')).toMatchObject({
        recommendation: 'index the half-precision cast (index.precision: half)',
      })
    })

    it('lists vector columns the plan does not target', async () => {
      await db.exec(`DROP TABLE IF EXISTS notes; CREATE TABLE notes (id int, v vector(4))`)
      const o = await diagnose()
      expect(o.findings.find((f) => f.code === 'UNTARGETED_VECTOR_COLUMN' && f.table === 'public.notes')).toMatchObject({
        column: 'v',
        severity: 'info',
        evidence: 'public.notes.v is vector(4) with 0 of 0 embedded; the plan does not target it',
      })
      await db.exec('DROP TABLE notes')
    })

    it('reads the application source as an engineer would: declaration, read, write, the create path without an embedding', async () => {
      const o = await diagnose(docsPlan((p) => ((p.target as any).app_source = join(import.meta.dirname, 'fixtures/app'))))
      // Relative to the repository root, as a reviewer opens them.
      expect(o.source_references.map((r) => `${r.file}:${r.line} ${r.kind}`)).toEqual([
        'test/fixtures/app/backend/app/models/atom.py:12 declares_vector_column',
        'test/fixtures/app/backend/app/services/vector_search_service.py:10 create_without_embedding',
        'test/fixtures/app/backend/app/services/vector_search_service.py:18 distance_query',
        'test/fixtures/app/backend/app/services/vector_search_service.py:23 uncalled_embedding_function',
        'test/fixtures/app/backend/app/services/vector_search_service.py:24 writes_embedding',
      ])
      expect(o.source_references[1]!.note).toBe('create_atom stores Atom (table atoms) without an embedding')
    })
  })

  it('reports the extension missing in a database without pgvector', async () => {
    const bare = await createTarget(kind)
    const bareDb = await bare.open()
    try {
      await bareDb.exec(`CREATE TABLE docs (id int PRIMARY KEY, body text, embedding real[])`)
      const o = (await runInProcess(docsPlan(), bareDb, registry)).outputs.diagnose as DiagnoseOutput
      expect(o.extension.installed_version).toBeNull()
      expect(o.findings.map((f) => f.code)).toEqual(['EXTENSION_MISSING', 'TARGET_NOT_VECTOR'])
      expect(o.root_cause).toBe('Semantic search cannot work: the pgvector extension is not installed in this database.')
    } finally {
      await bareDb.close()
      await bare.drop()
    }
  })
})

describe.skipIf(!serverUrl)('diagnose changes nothing (real server)', () => {
  it("is not stopped by another session's temporary table with a vector column, and does not list it", async () => {
    const target = await createTarget('postgres')
    const owner = await target.open()
    const other = new pg.Client({ connectionString: target.url })
    try {
      await initDemo(owner, 100)
      // An application session's scratch table: invisible to other sessions, and not the application's data.
      await other.connect()
      await other.query('CREATE TEMP TABLE scratch (id int, embedding vector(1536)); INSERT INTO scratch VALUES (1, NULL)')
      const result = await runInProcess(demoDiagnosePlan(), owner, registry)
      expect(result.status, result.session.state.batches[0]!.error).toBe('completed')
      const columns = (result.outputs.diagnose as DiagnoseOutput).vector_columns.map((c) => `${c.table}.${c.column}`)
      expect(columns).toEqual(['atoms.embedding', 'messages.embedding', 'topics.embedding'])
    } finally {
      await other.end()
      await owner.close()
      await target.drop()
    }
  })

  it('succeeds as a role that can only read, and leaves the table statistics unchanged', async () => {
    const target = await createTarget('postgres')
    const owner = await target.open()
    const role = `runner_ro_${process.pid}`
    try {
      await initDemo(owner, 200)
      await owner.exec(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN;
        GRANT USAGE ON SCHEMA public TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role};`)
      const stats = async () => {
        await owner.query('SELECT pg_stat_force_next_flush()')
        const { rows } = await owner.query<{ relname: string; n: string }>(
          `SELECT relname, concat_ws(',', n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd) AS n FROM pg_stat_user_tables ORDER BY relname`,
        )
        await owner.query('SELECT pg_stat_clear_snapshot()')
        return rows
      }
      const before = await stats()
      expect(before.find((r) => r.relname === 'atoms')!.n).toBe('120,0,0,0') // the counters do move on writes
      const url = new URL(target.url!)
      url.username = role
      const readOnly = await connectPostgres(url.toString())
      const result = await runInProcess(demoDiagnosePlan(), readOnly, registry)
      await readOnly.close()
      expect(result.status, result.session.state.batches[0]!.error).toBe('completed')
      expect(result.outputs.diagnose.targets[0].nulls).toBe(120)
      expect(await stats()).toEqual(before)
      // ...and it says which rights the later batches would miss.
      const missing = result.outputs.diagnose.findings.filter((f: any) => f.code === 'MISSING_PRIVILEGES')
      expect(missing.map((f: any) => f.evidence)).toContain(
        `role ${role} lacks on public.atoms: ${OWNERSHIP_NEEDED}; UPDATE (the backfill and the worker write embeddings)`,
      )
    } finally {
      await owner.close()
      await target.drop()
      const cleanup = await connectPostgres(serverUrl!)
      await cleanup.exec(`DROP ROLE IF EXISTS ${role}`)
      await cleanup.close()
    }
  })
})

describe("the application's source, read as an engineer would", () => {
  it('tells a declaration from a write, a commented-out write from one that runs, and finds what is never called', () => {
    const refs = scanSource(join(import.meta.dirname, 'fixtures/pyapp'))
    const at = (file: string, line: number) => refs.find((r) => r.file === `test/fixtures/pyapp/${file}` && r.line === line)
    // `embedding = mapped_column(Vector(EMBEDDING_DIMENSIONS))` declares; it writes nothing.
    expect(at('app/models.py', 27)?.kind).toBe('declares_vector_column')
    expect(refs.filter((r) => r.kind === 'writes_embedding')).toEqual([])
    expect(at('app/atoms.py', 11)?.kind).toBe('commented_out_write')
    expect(at('app/atoms.py', 9)).toMatchObject({
      kind: 'create_without_embedding',
      table: 'atoms',
      note: 'create_atom stores Atom (table atoms) without an embedding; its embedding write at line 11 is commented out',
    })
    expect(at('app/embedding_service.py', 12)).toMatchObject({
      kind: 'uncalled_embedding_function',
      note: 'generate_embedding is defined and never called',
    })
    // Each reference's line holds what it says.
    for (const r of refs)
      expect(
        readFileSync(join(import.meta.dirname, '..', r.file), 'utf8')
          .split('\n')
          [r.line - 1]!.trim(),
      ).toContain(r.text.slice(0, 40))
  })
})
