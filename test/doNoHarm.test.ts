import { readFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { quoteIdent } from '../src/db/quote.ts'
import { type AppShape, createApp, DIMS, generateShapes, planFor, qualified, rowCounts, shapeOf, snapshot } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { startFakeAnthropic } from './helpers/fakeAnthropic.ts'
import { startFakeOpenAI } from './helpers/fakeOpenAI.ts'
import { writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'

// Do no harm, on application schemas unlike the demo, on the real server: the runner writes
// only embeddings and its own schema, fires none of the application's triggers, keeps one
// model per column, and refuses before the first change what a read-only look can refute.

const LOCAL_MODEL = 'local-sif-glove100-v1'

/** The plan cut to diagnose and pipeline: installs the capture, embeds nothing. */
function pipelineOnly(plan: any) {
  plan.batches = plan.batches
    .filter((b: any) => ['diagnose', 'pipeline'].includes(b.step))
    .map((b: any) => ({ ...b, depends_on: b.step === 'pipeline' ? ['diagnose'] : [] }))
  return plan
}
const noStack = /\n\s+at /

describe.skipIf(!serverUrl)('do no harm (real server)', () => {
  let target: TestTarget
  let db: Database
  const dir = tempDir()
  const cleanups: (() => Promise<unknown>)[] = []

  beforeEach(async () => {
    target = await createServerDatabase()
    db = await target.open()
  })
  afterEach(async () => {
    await db?.close()
    await target?.drop()
  })
  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup()
  })

  const write = (plan: unknown) => writePlan(dir, plan, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  const run = (args: string[], env: Record<string, string | undefined> = {}) => {
    const sessions = ['start', 'resume'].includes(args[0]!)
      ? ['--sessions-dir', join(dir, `sessions-${Math.random().toString(36).slice(2)}`)]
      : []
    return runCli([...args, ...sessions], { env: { DATABASE_URL: target.url!, ...env } })
  }
  const runnerObjects = async () =>
    (
      await db.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM pg_namespace WHERE nspname = 'runner') + (SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%hnsw%')
          + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'runner_%'))::int AS n`,
      )
    ).rows[0]!.n
  const notOfModel = async (s: AppShape, model: string) =>
    (
      await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${qualified(s)} t LEFT JOIN runner.embedding_meta m ON m.table_name = $1 AND m.row_key = t.id::text
         WHERE t.${quoteIdent(s.embedding)} IS NULL OR m.model IS DISTINCT FROM $2`,
        [`${s.schema}.${s.table}`, model],
      )
    ).rows[0]!.n

  // A handful of generated application schemas: keys, names, triggers, partly filled columns.
  it.each(generateShapes(20261126, 4).map((s, i) => [i, s] as const))(
    'shape %i: a full plan and a worker re-embedding leave every other column, the audit log and every other table as they were',
    async (_i, shape) => {
      await createApp(db, shape)
      const before = await snapshot(db, shape)
      const counts = await rowCounts(db, 'runner')
      const started = await run(['start', write(planFor(shape)), '--with-worker'])
      expect(started.exitCode, started.all).toBe(3) // fixed; the worker started for the check is not a deployed one
      expect(await snapshot(db, shape)).toEqual(before)
      expect(await rowCounts(db, 'runner')).toEqual(counts)
      expect(await notOfModel(shape, LOCAL_MODEL)).toBe(0) // every row embedded, every vector the plan's model's, prefilled ones included

      // The application changes some text (its own triggers fire, as they should); the worker re-embeds.
      const first = quoteIdent(shape.textColumns[0]!.name)
      await db.exec(
        `UPDATE ${qualified(shape)} SET ${first} = ${first} || ' (edited)' WHERE id::text IN (SELECT id::text FROM ${qualified(shape)} ORDER BY id LIMIT 3)`,
      )
      const edited = await snapshot(db, shape)
      const worker = await run(['worker', write(planFor(shape)), '--until-empty'])
      expect(worker.exitCode, worker.all).toBe(0)
      expect(await snapshot(db, shape)).toEqual(edited)
      expect(await notOfModel(shape, LOCAL_MODEL)).toBe(0)
    },
  )

  describe('a role that is not a superuser', () => {
    let role = ''
    const shape = shapeOf({ schema: 'crm', table: 'notes', key: 'uuid', rows: 30, updatedAtTrigger: true, auditTrigger: true })
    const asRole = () => {
      const url = new URL(target.url!)
      url.username = role
      return url.toString()
    }
    async function setUpRole() {
      role = `runner_app_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
      const name = role
      await createApp(db, shape)
      await db.exec(`CREATE ROLE ${role} LOGIN; GRANT CREATE ON DATABASE ${quoteIdent(new URL(target.url!).pathname.slice(1))} TO ${role};
        ALTER SCHEMA crm OWNER TO ${role}; ALTER TABLE crm.notes OWNER TO ${role}; GRANT INSERT ON crm.audit_log TO ${role}`)
      cleanups.push(async () => {
        const admin = new pg.Client({ connectionString: serverUrl })
        await admin.connect()
        await admin.query(`DROP ROLE IF EXISTS ${name}`).catch(() => {})
        await admin.end()
      })
    }
    const dropRoleObjects = () => db.exec(`REASSIGN OWNED BY ${role} TO postgres; DROP OWNED BY ${role}`)

    it('refuses before any change when it may not keep the triggers quiet, and says how to grant it', async () => {
      await setUpRole()
      try {
        const refused = await run(['start', write(planFor(shape)), '--with-worker'], { DATABASE_URL: asRole() })
        expect(refused.exitCode, refused.all).toBe(2)
        expect(refused.stderr).toContain(
          'target.application_triggers: trigger audit_changes on crm.notes (crm.audit), trigger set_updated_at on crm.notes (crm.touch)',
        )
        expect(refused.stderr).toContain('GRANT SET ON PARAMETER session_replication_role')
        expect(refused.stderr).not.toMatch(noStack)
        expect(await runnerObjects()).toBe(0)

        await db.exec(`GRANT SET ON PARAMETER session_replication_role TO ${role}`)
        const before = await snapshot(db, shape)
        const granted = await run(['start', write(planFor(shape)), '--with-worker'], { DATABASE_URL: asRole() })
        expect(granted.exitCode, granted.all).toBe(3) // fixed; the worker started for the check is not a deployed one
        expect(await snapshot(db, shape)).toEqual(before)
      } finally {
        await db.exec(`REVOKE SET ON PARAMETER session_replication_role FROM ${role}`).catch(() => {})
        await dropRoleObjects()
      }
    })

    it('lets them fire when the plan chooses it, as chosen', async () => {
      await setUpRole()
      try {
        const before = await snapshot(db, shape)
        const fired = await run(['start', write(planFor(shape, { target: { application_triggers: 'fire' } })), '--with-worker'], {
          DATABASE_URL: asRole(),
        })
        expect(fired.exitCode, fired.all).toBe(3) // fixed; the worker started for the check is not a deployed one
        const after = await snapshot(db, shape)
        expect(after.audit).toBeGreaterThanOrEqual(before.audit + shape.rows) // one audit row per embedded row: what fire means
      } finally {
        await dropRoleObjects()
      }
    })
  })

  describe('the runner schema is its own', () => {
    const shape = shapeOf({ schema: 'crm', rows: 20, auditTrigger: true })
    const installingInto = (runnerSchema: string) => write(pipelineOnly(planFor(shape, { target: { runner_schema: runnerSchema } })))
    const appIntact = async () =>
      (await db.query<{ n: number }>('SELECT (SELECT count(*) FROM crm.docs) + (SELECT count(*) FROM crm.audit_log) AS n')).rows[0]!.n

    it.each(['public', 'crm'])('refuses runner_schema %s, which holds the application, and uninstall leaves it whole', async (name) => {
      await createApp(db, shape)
      await db.exec("CREATE TABLE public.settings (k text PRIMARY KEY); INSERT INTO public.settings VALUES ('a')")
      const intact = await appIntact()
      const path = installingInto(name)
      const refused = await run(['start', path])
      expect(refused.exitCode, refused.all).toBe(2)
      expect(refused.stderr).toContain(`target.runner_schema: schema ${name} holds what the runner did not create`)
      const uninstall = await run(['pipeline', 'uninstall', path])
      expect(uninstall.exitCode, uninstall.all).toBe(0)
      expect(await appIntact()).toBe(intact)
      expect((await db.query('SELECT k FROM public.settings')).rows).toEqual([{ k: 'a' }])
    })

    it.each(['pg_catalog', 'information_schema'])('refuses runner_schema %s in the plan itself', async (name) => {
      const refused = await run(['start', installingInto(name)])
      expect(refused.exitCode).toBe(2)
      expect(refused.stderr).toContain('target.runner_schema: pg_* and information_schema are system schemas')
    })

    it.each(['My "Runner" Schema', 'r$fn$x;DROP TABLE crm.docs;--', 'runner_ünï'])(
      'installs into %s and uninstall removes exactly that',
      async (name) => {
        await createApp(db, shape)
        const intact = await appIntact()
        const path = installingInto(name)
        const installed = await run(['start', path])
        expect(installed.exitCode, installed.all).toBe(0)
        expect((await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rows).toHaveLength(1)
        const uninstall = await run(['pipeline', 'uninstall', path])
        expect(uninstall.exitCode, uninstall.all).toBe(0)
        expect((await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name])).rows).toHaveLength(0)
        expect((await db.query(`SELECT 1 FROM pg_trigger WHERE tgname LIKE 'runner_%'`)).rows).toHaveLength(0)
        expect(await appIntact()).toBe(intact)
      },
    )

    it('keeps a schema a DBA made for it, dropping only what the runner put there', async () => {
      await createApp(db, shape)
      await db.exec('CREATE SCHEMA dba_made')
      const path = installingInto('dba_made')
      expect((await run(['start', path])).exitCode).toBe(0)
      const uninstall = await run(['pipeline', 'uninstall', path])
      expect(uninstall.stderr).toContain('schema dba_made kept: the runner did not create it')
      expect(
        (
          await db.query(
            `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'dba_made'`,
          )
        ).rows[0],
      ).toEqual({ n: 0 })
      expect((await db.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'dba_made'`)).rows).toHaveLength(1)
    })
  })

  it.each([
    ['on', 'on'],
    ['off', 'off'],
  ])('no plan identifier can end a trigger body or run SQL of its own (check_function_bodies %s)', async (_label, setting) => {
    const shape: AppShape = {
      schema: 'x$fn$"; DROP TABLE public.sentinel; --',
      table: 'y$$z;$fn$',
      key: 'text',
      textColumns: [
        { name: 'a$fn$b', type: 'text' },
        { name: '"quoted" ünï;', type: 'varchar(200)' },
      ],
      embedding: 'e$fn$ $$',
      rows: 5,
      prefilled: 0,
      updatedAtTrigger: false,
      auditTrigger: false,
    }
    await db.exec(
      `CREATE TABLE public.sentinel (x int); ALTER DATABASE ${quoteIdent(new URL(target.url!).pathname.slice(1))} SET check_function_bodies = ${setting}`,
    )
    await createApp(db, shape)
    const plan = pipelineOnly(planFor(shape))
    const installed = await run(['start', write(plan)])
    expect(installed.exitCode, installed.all).toBe(0)
    expect((await db.query(`SELECT to_regclass('public.sentinel') IS NOT NULL AS ok`)).rows[0]).toEqual({ ok: true })
    const inserted = await db.query<{ id: string }>(
      `INSERT INTO ${qualified(shape)} (${quoteIdent('a$fn$b')}) VALUES ('new text') RETURNING id`,
    )
    const queued = await db.query('SELECT table_name, row_key FROM runner.embedding_queue ORDER BY enqueued_at')
    expect(queued.rows).toContainEqual({ table_name: `${shape.schema}.${shape.table}`, row_key: inserted.rows[0]!.id })
  })

  it('keeps an embedding the application writes together with its new text', async () => {
    const shape = shapeOf({ rows: 3 })
    await createApp(db, shape)
    const plan = pipelineOnly(planFor(shape))
    expect((await run(['start', write(plan)])).exitCode).toBe(0)
    const own = `[${Array.from({ length: DIMS }, (_, i) => (i === 0 ? 1 : 0)).join(',')}]`
    await db.query(`UPDATE docs SET body = 'new text', embedding = $1 WHERE id = 1`, [own])
    await db.query(`UPDATE docs SET body = 'other text' WHERE id = 2`)
    const { rows } = await db.query<{ id: number; e: string | null }>(
      'SELECT id::int AS id, embedding::text AS e FROM docs WHERE id IN (1, 2) ORDER BY id',
    )
    expect(rows).toEqual([
      { id: 1, e: own },
      { id: 2, e: null },
    ])
    expect((await db.query(`SELECT row_key FROM runner.embedding_queue ORDER BY row_key`)).rows).toEqual([{ row_key: '2' }]) // the text change alone
  })

  describe('one model per column', () => {
    const shape = shapeOf({ rows: 25, updatedAtTrigger: true })

    it('refuses another model from start, resume and the worker; --change-model moves the whole column, with every row embedded again', async () => {
      const fake = await startFakeOpenAI()
      try {
        await createApp(db, shape)
        const openai = { OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url }
        expect((await run(['start', write(planFor(shape)), '--with-worker', '--provider', 'local'])).exitCode).toBe(3)
        const auto = write(planFor(shape, { embedding: { provider: 'auto' } }))

        const again = await run(['start', auto, '--with-worker'], openai) // auto takes openai when a key is set
        expect(again.exitCode, again.all).toBe(2)
        expect(again.stderr).toContain(
          `public.docs.embedding holds embeddings of local ${LOCAL_MODEL}; this run would write openai text-embedding-3-small`,
        )
        const worker = await run(['worker', auto, '--until-empty'], openai)
        expect(worker.exitCode, worker.all).toBe(2)
        expect(worker.stderr).toContain(`holds embeddings of local ${LOCAL_MODEL}`)
        expect(worker.stderr).not.toMatch(noStack)
        expect(fake.embedded.size).toBe(1) // the preflight's one-text probe, nothing written
        expect(await notOfModel(shape, LOCAL_MODEL)).toBe(0)

        const changed = await run(['start', auto, '--with-worker', '--change-model'], openai)
        expect(changed.exitCode, changed.all).toBe(3)
        expect(changed.stderr).toContain(`model changed from local ${LOCAL_MODEL} to openai text-embedding-3-small (--change-model)`)
        expect(changed.stderr).toContain('cost estimate: 25 rows (25 of them to embed again)') // shown before any is embedded again
        expect(await notOfModel(shape, 'text-embedding-3-small')).toBe(0)
      } finally {
        await fake.close()
      }
    })

    it('resumes with the provider the session started with, whatever the environment says', async () => {
      const fake = await startFakeOpenAI()
      try {
        await createApp(db, shape)
        const sessions = join(dir, `sessions-resume-${Math.random().toString(36).slice(2)}`)
        const broken = planFor(shape, {
          validate: { labelled_queries: '/nonexistent/labels.json' },
          criteria: { relevance_recall_at_k: { k: 5, min: 0.1 } },
        })
        const path = write(broken)
        const first = await runCli(['start', path, '--provider', 'local', '--with-worker', '--sessions-dir', sessions], {
          env: { DATABASE_URL: target.url! },
        })
        expect(first.exitCode, first.all).toBe(2)
        expect(first.stderr).toContain('validate.labelled_queries: cannot read /nonexistent/labels.json')
        const state = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'coordination-state.json'), 'utf8'))
        expect(state.options.provider).toBe('local')
        writePlan(dir, planFor(shape, { embedding: { provider: 'auto' } }), path.split('/').pop())
        const resumed = await runCli(['resume', '--allow-plan-change', '--sessions-dir', sessions], {
          env: { DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url },
        })
        expect(resumed.exitCode, resumed.all).toBe(3) // fixed; the worker started for the check is not a deployed one
        expect(resumed.stderr).toContain('embedding provider: local')
        expect(fake.requests).toHaveLength(0)
      } finally {
        await fake.close()
      }
    })
  })

  describe('refused before the first change', () => {
    const shape = shapeOf({ rows: 10 })

    it('a text column that is not text, unless cast on purpose; a key that is not unique', async () => {
      await createApp(db, shape)
      await db.exec('ALTER TABLE docs ADD COLUMN payload jsonb DEFAULT \'{"a": 1}\', ADD COLUMN ref int')
      const plan = planFor(shape) as any
      plan.target.tables[0].text_columns = ['body', 'payload']
      const refused = await run(['start', write(plan)])
      expect(refused.exitCode).toBe(2)
      expect(refused.stderr).toContain('target.tables[0].text_columns[1]: public.docs.payload is jsonb, not text')
      expect(await runnerObjects()).toBe(0)
      plan.target.tables[0].cast_to_text = ['payload']
      expect((await run(['start', write(plan), '--dry-run'])).exitCode).toBe(0)

      const byRef = planFor(shape) as any
      byRef.target.tables[0].key = 'ref'
      const notUnique = await run(['start', write(byRef)])
      expect(notUnique.exitCode).toBe(2)
      expect(notUnique.stderr).toContain('target.tables[0].key: public.docs.ref must be NOT NULL and unique on its own')
      expect(await runnerObjects()).toBe(0)
    })

    it('index parameters pgvector refuses, dimensions the column does not have, a key the provider rejects', async () => {
      await createApp(db, shape)
      const badIndex = await run(['start', write(planFor(shape, { index: { m: 16, ef_construction: 20 } }))])
      expect(badIndex.exitCode).toBe(2)
      expect(badIndex.stderr).toContain('index.ef_construction: pgvector needs ef_construction to be at least twice m')

      await db.exec('CREATE TABLE wide (id int PRIMARY KEY, body text, embedding vector(2048))')
      const wide = planFor(shape, { embedding: { dimensions: 2048 } }) as any
      wide.target.tables = [{ table: 'wide', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
      const tooWide = await run(['start', write(wide), '--dry-run'])
      expect(tooWide.exitCode, tooWide.all).toBe(2)
      expect(tooWide.stdout).toContain(
        'index.precision: public.wide.embedding has 2048 dimensions; an HNSW index on vector takes at most 2000',
      )
      expect((await run(['start', write({ ...wide, index: { precision: 'half' } }), '--dry-run'])).exitCode).toBe(0)

      const badDims = await run(['start', write(planFor(shape, { embedding: { dimensions: 8 } }))])
      expect(badDims.exitCode).toBe(2)
      expect(badDims.stderr).toContain(
        `embedding.dimensions: public.docs.embedding is vector(${DIMS}) but the plan's model text-embedding-3-small gives 8 dimensions`,
      )

      const fake = await startFakeOpenAI()
      try {
        const badKey = await run(['start', write(planFor(shape, { embedding: { provider: 'openai' } }))], {
          OPENAI_API_KEY: 'sk-wrong',
          OPENAI_BASE_URL: fake.url,
        })
        expect(badKey.exitCode).toBe(2)
        expect(badKey.stderr).toContain(
          'embedding.provider: the openai provider did not answer a one-text embedding request: OpenAI rejected the API key (401)',
        )
        expect(badKey.stderr).not.toContain('sk-wrong')
      } finally {
        await fake.close()
      }
      expect(await runnerObjects()).toBe(0)
    })
  })

  it("diagnoses the application's triggers, vectors of unknown origin, and that no trigger writes the column", async () => {
    const shape = shapeOf({ schema: 'crm', key: 'uuid', rows: 20, prefilled: 0.5, updatedAtTrigger: true, auditTrigger: true })
    await createApp(db, shape)
    const plan = planFor(shape) as any
    plan.batches = plan.batches.slice(0, 1)
    const sessions = join(dir, `sessions-diagnose-${Math.random().toString(36).slice(2)}`)
    const diagnosed = await runCli(['start', write(plan), '--sessions-dir', sessions], { env: { DATABASE_URL: target.url! } })
    expect(diagnosed.exitCode, diagnosed.all).toBe(0)
    const output = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'batches/01-diagnose/output.json'), 'utf8'))
    const codes = output.findings.map((f: any) => f.code)
    expect(codes).toEqual(expect.arrayContaining(['APPLICATION_TRIGGERS', 'FOREIGN_EMBEDDINGS', 'NO_EMBEDDING_WRITER']))
    expect(output.side_effects.triggers.map((t: any) => t.name).sort()).toEqual(['audit_changes', 'set_updated_at'])
    expect(output.side_effects.triggers.find((t: any) => t.name === 'audit_changes').source).toContain('INSERT INTO')
    expect(output.targets[0].origin).toMatchObject({ embedded: 10, unknown: 10, this_model: 0 })
  })

  it('sends nothing to the Anthropic API unless narration is chosen, whatever keys the environment holds', async () => {
    const anthropic = await startFakeAnthropic()
    try {
      const shape = shapeOf({ rows: 5 })
      await createApp(db, shape)
      const plan = planFor(shape) as any
      plan.batches = plan.batches.slice(0, 1)
      const env = { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: anthropic.url }
      expect((await run(['start', write(plan)], env)).exitCode).toBe(0)
      expect(anthropic.requests).toHaveLength(0)
      expect((await run(['start', write(plan), '--narrate'], env)).exitCode).toBe(0)
      expect(anthropic.requests).toHaveLength(1)
    } finally {
      await anthropic.close()
    }
  })
})
