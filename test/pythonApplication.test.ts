import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { chainedBatches, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { waitFor as until } from './helpers/waitFor.ts'

// The runner as a Python team meets it: a FastAPI + SQLAlchemy 2 + Alembic application
// (test/fixtures/pyapp: three revisions of its own, the embedding call lost in a refactor),
// its tables owned by a migration role, the application connecting as a role with DML only.
// After the plan, the team keeps it fixed with its own tools: its pytest (with the file the
// validate batch wrote), its `alembic check`, its autogenerate.

const fixture = join(import.meta.dirname, 'fixtures/pyapp')
const venv = join(fixture, '.venv')
const required = process.env.RUNNER_REQUIRE_SERVER_TESTS === '1'
if (required && !existsSync(join(venv, 'bin/alembic')))
  throw new Error(`${venv} is missing: run scripts/install-python-fixture.sh (.ci/run does)`)

describe.skipIf(!serverUrl || !existsSync(join(venv, 'bin/alembic')))(
  'a Python application keeps it fixed with its own tools (real server)',
  () => {
    let target: TestTarget
    let admin: Database
    let worker: ResultPromise | undefined
    const app = join(tempDir(), 'app')
    const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 6)}`
    const owner = `pyapp_owner_${suffix}`
    const role = `pyapp_app_${suffix}`
    const urlAs = (name: string) => {
      const url = new URL(target.url!)
      url.username = name
      return url.toString()
    }
    const python = join(app, '.venv/bin/python')
    const alembic = (args: string[]) =>
      execa(join(app, '.venv/bin/alembic'), args, { cwd: app, env: { DATABASE_URL: urlAs(owner) }, reject: false, all: true })
    const pytest = (args: string[]) =>
      execa(python, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', ...args], {
        cwd: app,
        env: { DATABASE_URL: urlAs(role) },
        reject: false,
        all: true,
      })
    const runner = (args: string[]) => runCli(args, { cwd: app, env: { DATABASE_URL: urlAs(owner), APP_DATABASE_URL: urlAs(role) } })
    const session = () => join(app, 'sessions', sessionFolders(join(app, 'sessions'))[0]!)
    const output = (batch: string) => {
      const folder = readdirSync(join(session(), 'batches')).find((f) => f.endsWith(`-${batch}`))!
      return JSON.parse(readFileSync(join(session(), 'batches', folder, 'output.json'), 'utf8'))
    }

    beforeAll(async () => {
      target = await createServerDatabase()
      admin = await target.open()
      const database = new URL(target.url!).pathname.slice(1)
      await admin.exec(`CREATE EXTENSION vector; CREATE ROLE ${owner} LOGIN; CREATE ROLE ${role} LOGIN;
      GRANT CREATE ON DATABASE ${database} TO ${owner}; ALTER SCHEMA public OWNER TO ${owner}; GRANT ${role} TO ${owner}`)
      // The application's repository, as its team has it: its own git, its own virtual environment.
      cpSync(fixture, app, { recursive: true, filter: (from) => !/(\.venv|__pycache__|\.pytest_cache)$/.test(from) })
      symlinkSync(venv, join(app, '.venv'))
      await execa('git', ['init', '-q'], { cwd: app })
      const migrated = await alembic(['upgrade', 'head'])
      expect(migrated.exitCode, migrated.all).toBe(0)
      const ownerDb = new pg.Client({ connectionString: urlAs(owner) })
      await ownerDb.connect()
      await ownerDb.query(`INSERT INTO topics (name) SELECT 'topic ' || g FROM generate_series(1, 10) g;
      INSERT INTO atoms (topic_id, title, content)
        SELECT 1 + g % 10, 'note ' || g,
               (ARRAY['pgvector indexes', 'queue workers', 'search latency', 'embedding models', 'alembic migrations'])[1 + g % 5]
                 || ' ' || (ARRAY['in production', 'on a laptop', 'under load', 'after a refactor'])[1 + g % 4] || ' ' || g
        FROM generate_series(1, 2500) g;
      GRANT USAGE ON SCHEMA public TO ${role};
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role};
      GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`)
      await ownerDb.end()
      mkdirSync(join(app, 'plans'))
      writePlan(
        join(app, 'plans'),
        {
          id: 'pyapp-search',
          title: 'Semantic search for the Python application',
          target: {
            database_url_env: 'DATABASE_URL',
            app_source: 'app',
            // What the application sets where it searches (SET LOCAL in its transaction).
            application_settings: { ef_search: 100 },
            alembic: { versions_dir: 'migrations/versions', ini: 'alembic.ini', apply: true, patch: true, capture_revision: true },
            app_tests: { path: 'tests/test_vector_search.py', database_url_env: 'APP_DATABASE_URL' },
            tables: [{ table: 'atoms', key: 'id', text_columns: ['title', 'content'], embedding_column: 'embedding', distance: 'cosine' }],
          },
          embedding: { provider: 'local', model: 'text-embedding-ada-002', dimensions: 1536 },
          validate: { latency_queries: 20, exact_queries: 10, rounds: 1 },
          // Relevance is not this fixture's point: its texts are near-copies of each other.
          criteria: {
            null_embeddings_max: 0,
            hnsw_index_on_every_column: true,
            auto_embed_within_seconds: 10,
            explain_uses_index: true,
            relevance_recall_at_k: null,
          },
          worker: { poll_ms: 100, heartbeat_seconds: 1 },
          batches: chainedBatches('diagnose', 'index', 'pipeline', 'backfill', 'validate'),
        },
        'feature-1.yaml',
      )
    }, 120_000)

    afterAll(async () => {
      worker?.kill('SIGKILL')
      await admin?.close()
      await target?.drop()
      const cluster = new pg.Client({ connectionString: serverUrl })
      await cluster.connect()
      for (const name of [owner, role]) await cluster.query(`DROP ROLE IF EXISTS ${name}`).catch(() => {})
      await cluster.end()
    })

    it('diagnoses the lost call in the code, and leaves Alembic agreeing: alembic check passes and autogenerate drops nothing', async () => {
      const paused = await runner(['start', 'plans/feature-1.yaml', '--pause-after', 'backfill'])
      expect(paused.exitCode, paused.all).toBe(0)

      const diagnosis = output('diagnose')
      // Relative to the application's repository root, as its team opens them.
      expect(diagnosis.source_references).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ file: 'app/atoms.py', line: 11, kind: 'commented_out_write' }),
          expect.objectContaining({ file: 'app/atoms.py', line: 9, kind: 'create_without_embedding' }),
          expect.objectContaining({ file: 'app/embedding_service.py', line: 12, kind: 'uncalled_embedding_function' }),
          expect.objectContaining({ file: 'app/models.py', line: 27, kind: 'declares_vector_column' }),
        ]),
      )
      expect(diagnosis.root_cause).toContain(
        'in the application, create_atom stores Atom (table atoms) without an embedding; its embedding write at line 11 is commented out (app/atoms.py:9)',
      )
      expect(diagnosis.root_cause).toContain('generate_embedding is defined and never called (app/embedding_service.py:12)')
      expect(diagnosis.findings.map((f: { code: string }) => f.code)).toContain('APP_STORES_WITHOUT_EMBEDDING')

      const index = output('index')
      expect(index.migrations.applied_with).toBe('alembic') // the application's alembic, from its .venv, applied the revision
      expect(index.alembic.check).toMatchObject({ passed: true, command: `${join(app, '.venv/bin/alembic')} check` })
      expect(index.alembic.patched.sort()).toEqual([join(app, 'app/models.py'), join(app, 'migrations/env.py')])
      expect(readFileSync(join(app, 'app/models.py'), 'utf8')).toContain(
        'Index("atoms_embedding_hnsw", Atom.__table__.c["embedding"], postgresql_using="hnsw", postgresql_with={"m": 16, "ef_construction": 64}, postgresql_ops={"embedding": "vector_cosine_ops"})',
      )
      // The team's own tools agree with the database: one head, check passes, autogenerate writes no drop.
      expect((await alembic(['heads'])).stdout.trim().split('\n')).toHaveLength(1)
      expect((await alembic(['check'])).exitCode).toBe(0)
      const generated = await alembic(['revision', '--autogenerate', '-m', 'probe'])
      expect(generated.exitCode, generated.all).toBe(0)
      const probe = readdirSync(join(app, 'migrations/versions')).find((f) => f.includes('probe'))!
      const text = readFileSync(join(app, 'migrations/versions', probe), 'utf8')
      rmSync(join(app, 'migrations/versions', probe))
      expect(text).not.toMatch(/drop_index|drop_table|create_index/)
    }, 300_000)

    it("writes a test file into the application's suite that passes as the application's role, and fails when the worker stops or the index goes", async () => {
      worker = runCli(['worker', 'plans/feature-1.yaml'], { cwd: app, env: { DATABASE_URL: urlAs(owner) } })
      await until('the worker registered', async () => (await admin.query('SELECT 1 FROM runner.workers')).rows.length > 0, 60_000)
      const resumed = await runner(['resume'])
      expect(resumed.exitCode, resumed.all).toBe(0)
      const validation = output('validate')
      expect(validation.app_tests).toMatchObject({ path: 'tests/test_vector_search.py', ran: true, failed: 0, exit_code: 0 })
      expect(validation.app_tests.passed).toBe(5)
      const summary = readFileSync(join(session(), 'summary.md'), 'utf8')
      expect(summary).toContain("the application's tests (tests/test_vector_search.py): 5 passed, 0 failed, 0 skipped")
      expect(summary).toMatch(/\| after \| backfill \| .* by \S+ \|/) // the check-in, and who went on

      // The application's whole suite, its own test included (it stores an atom through the API), as its role.
      const suite = await pytest(['tests'])
      expect(suite.exitCode, suite.all).toBe(0)
      expect(suite.stdout).toMatch(/6 passed/)

      // The worker stops: the suite says so.
      worker.kill('SIGTERM')
      await worker.catch(() => {})
      const stopped = await pytest(['tests/test_vector_search.py', '-k', 'new_row'])
      expect(stopped.exitCode).not.toBe(0)
      expect(stopped.stdout).toContain('no embedding after 10 s; is the worker running?')

      // The index goes: the suite says so.
      await admin.exec('DROP INDEX atoms_embedding_hnsw')
      const dropped = await pytest(['tests/test_vector_search.py', '-k', 'index or served'])
      expect(dropped.exitCode).not.toBe(0)
      expect(dropped.stdout).toContain('atoms_embedding_hnsw is missing on public.atoms')
      expect(dropped.stdout).toMatch(/is a sequential scan at SET LOCAL hnsw.ef_search = 100/)
    }, 300_000)

    it("a database built from scratch by the application's `alembic upgrade head` gets the indexes and the capture; downgrade removes them", async () => {
      const scratch = await createServerDatabase()
      const scratchDb = await scratch.open()
      const url = (name: string) => {
        const u = new URL(scratch.url!)
        u.username = name
        return u.toString()
      }
      const alembicThere = (args: string[]) =>
        execa(join(app, '.venv/bin/alembic'), args, { cwd: app, env: { DATABASE_URL: url(owner) }, reject: false, all: true })
      try {
        const database = new URL(scratch.url!).pathname.slice(1)
        await scratchDb.exec(
          `CREATE EXTENSION vector; GRANT CREATE ON DATABASE ${database} TO ${owner}; ALTER SCHEMA public OWNER TO ${owner}`,
        )
        const built = await alembicThere(['upgrade', 'head'])
        expect(built.exitCode, built.all).toBe(0)
        const triggers = await scratchDb.query<{ tgname: string }>(
          `SELECT tgname FROM pg_trigger WHERE tgrelid = 'atoms'::regclass AND NOT tgisinternal ORDER BY 1`,
        )
        expect(triggers.rows.map((r) => r.tgname)).toEqual(['runner_dequeue_embedding', 'runner_enqueue_embedding'])
        expect((await scratchDb.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'atoms_embedding_hnsw'`)).rows).toHaveLength(1)
        // A row the application stores is queued for the worker, as on the database the runner fixed.
        await scratchDb.exec(
          `GRANT USAGE ON SCHEMA public TO ${role}; GRANT SELECT, INSERT ON atoms TO ${role}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
        )
        const asApp = new pg.Client({ connectionString: url(role) })
        await asApp.connect()
        await asApp.query(`INSERT INTO atoms (title, content) VALUES ('from scratch', 'a row stored by the application')`)
        await asApp.end()
        expect((await scratchDb.query(`SELECT row_key FROM runner.embedding_queue WHERE table_name = 'public.atoms'`)).rows).toHaveLength(1)
        // The record of what runner created lists the capture, so `runner pipeline uninstall` removes it there too.
        const created = await scratchDb.query<{ kind: string }>(`SELECT kind FROM runner.created_objects ORDER BY kind`)
        expect(created.rows.map((r) => r.kind)).toEqual(['function', 'schema', 'trigger', 'trigger'])
        const down = await alembicThere(['downgrade', 'c3'])
        expect(down.exitCode, down.all).toBe(0)
        expect(
          (await scratchDb.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = 'atoms'::regclass AND NOT tgisinternal`)).rows,
        ).toHaveLength(0)
        expect((await scratchDb.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'atoms_embedding_hnsw'`)).rows).toHaveLength(0)
      } finally {
        await scratchDb.close()
        await scratch.drop()
      }
    }, 120_000)
  },
)
