import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { migrateRunnerSchema, readSchemaVersion } from '../src/db/runnerSchema/migrateRunnerSchema.ts'
import { LATEST_SCHEMA_VERSION } from '../src/db/runnerSchema/migrations.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets } from '../src/db/target.ts'
import { installPipeline, uninstallPipeline } from '../src/pipeline/installPipeline.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { createTarget, targetKinds, tempDir, type TestTarget } from './helpers/databases.ts'
import { testPlan, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// The runner's own schema: versioned migrations, a worker that refuses a schema it does not
// know, and an uninstall that removes exactly what the runner created.

describe.each(targetKinds)('the runner schema on %s', (kind) => {
  let target: TestTarget
  let db: Database
  const dir = tempDir()

  function planFor(runnerSchemaName = 'runner') {
    const p = testPlan({ embeddedPath: target.path, urlEnv: 'DATABASE_URL' }) as any
    p.target.runner_schema = runnerSchemaName
    p.target.tables = [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'local', model: 'local', dimensions: 3 }
    const path = writePlan(dir, p, `plan-${Math.random().toString(36).slice(2)}.yaml`)
    return { path, plan: loadPlan(path).plan }
  }
  const count = async (sql: string, params: unknown[] = []) => (await db.query<{ n: number }>(sql, params)).rows[0]!.n

  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
  })
  beforeEach(async () => {
    await db.exec(`DROP SCHEMA IF EXISTS runner CASCADE; DROP TABLE IF EXISTS docs; CREATE EXTENSION IF NOT EXISTS vector;
      CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(3));
      INSERT INTO docs VALUES (1, 'one', '[1,0,0]'), (2, 'two', NULL)`)
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  it('migrates once, records each version, and adopts the tables an older runner created', async () => {
    const rs = runnerSchema('runner')
    // What releases before the migration list left: the queue, without any record of versions.
    await db.exec(`CREATE SCHEMA runner; CREATE TABLE runner.embedding_queue (table_name text NOT NULL, row_key text NOT NULL, enqueued_at timestamptz NOT NULL DEFAULT now(),
      run_at timestamptz NOT NULL DEFAULT now(), attempts int NOT NULL DEFAULT 0, locked_by text, locked_at timestamptz, last_error text, PRIMARY KEY (table_name, row_key));
      INSERT INTO runner.embedding_queue (table_name, row_key) VALUES ('public.docs', '2')`)
    expect(await readSchemaVersion(db, rs)).toEqual({ version: 0, latest: LATEST_SCHEMA_VERSION })
    expect(await migrateRunnerSchema(db, rs)).toEqual({ from: 0, to: LATEST_SCHEMA_VERSION })
    expect(await migrateRunnerSchema(db, rs)).toEqual({ from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION })
    expect(await count('SELECT count(*)::int AS n FROM runner.schema_migrations')).toBe(LATEST_SCHEMA_VERSION)
    expect(await count('SELECT count(*)::int AS n FROM runner.embedding_queue')).toBe(1) // kept, not recreated
  })

  it('refuses to migrate a schema written by a newer runner', async () => {
    const rs = runnerSchema('runner')
    await migrateRunnerSchema(db, rs)
    await db.query(`INSERT INTO runner.schema_migrations (version, description) VALUES ($1, 'from the future')`, [
      LATEST_SCHEMA_VERSION + 1,
    ])
    await expect(migrateRunnerSchema(db, rs)).rejects.toThrow(`is at version ${LATEST_SCHEMA_VERSION + 1}, written by a newer runner`)
  })

  it('uninstall removes the triggers, the runner tables and its schema, and nothing of the application', async () => {
    const { plan } = planFor()
    const rs = runnerSchema(plan.target.runner_schema)
    const targets = await resolveTargets(db, plan)
    await installPipeline(db, rs, targets)
    await db.query(`UPDATE docs SET body = 'two, changed' WHERE id = 2`) // queued by the trigger
    const removed = await uninstallPipeline(db, rs, targets)
    expect(removed.at(-1)).toBe('schema runner')
    expect(await count(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'runner'`)).toBe(0)
    expect(await count(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND NOT tgisinternal`)).toBe(0)
    expect((await db.query('SELECT id, body, embedding::text AS e FROM docs ORDER BY id')).rows).toEqual([
      { id: 1, body: 'one', e: '[1,0,0]' },
      { id: 2, body: 'two, changed', e: null },
    ])
  })

  it('uninstall with runner_schema: public drops no application table and keeps the schema', async () => {
    const { plan } = planFor('public')
    const rs = runnerSchema('public')
    const targets = await resolveTargets(db, plan)
    await installPipeline(db, rs, targets)
    await uninstallPipeline(db, rs, targets)
    expect(await count(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'public'`)).toBe(1)
    expect(await count('SELECT count(*)::int AS n FROM docs')).toBe(2)
    expect(await count(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'embedding_%'`)).toBe(0)
  })
})

describe.each(targetKinds.filter((k) => k === 'postgres'))('runner worker against the runner schema (%s)', (kind) => {
  let target: TestTarget
  let db: Database
  const dir = tempDir()

  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
    await db.exec(`CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE docs (id int PRIMARY KEY, body text, embedding vector(3))`)
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  function plan() {
    const p = testPlan({ urlEnv: 'DATABASE_URL' }) as any
    p.target.tables = [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
    p.embedding = { provider: 'local', model: 'local', dimensions: 3 }
    return writePlan(dir, p, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  }

  it('refuses, in one line and with exit 2, to start before the pipeline is installed', async () => {
    const run = await runCli(['worker', plan(), '--until-empty'], { env: { DATABASE_URL: target.url! } })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain('the auto-embedding pipeline is not installed in this database')
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })

  it('refuses a runner schema newer than it knows, saying to upgrade', async () => {
    const path = plan()
    const { plan: loaded } = loadPlan(path)
    await installPipeline(db, runnerSchema('runner'), await resolveTargets(db, loaded))
    await db.query(`INSERT INTO runner.schema_migrations (version, description) VALUES ($1, 'from the future')`, [
      LATEST_SCHEMA_VERSION + 1,
    ])
    const run = await runCli(['worker', path, '--until-empty'], { env: { DATABASE_URL: target.url! } })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain(`the runner's schema "runner" is at version ${LATEST_SCHEMA_VERSION + 1}, written by a newer runner`)
    expect(run.stderr).toContain('Upgrade runner on this machine')
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })
})
