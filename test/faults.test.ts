import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { initDemo } from '../src/demo/initDemo.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fakeOpenAI.ts'
import { runCli } from './helpers/runCli.ts'

// Bad input and faults on the real server: a clear error, a non-zero exit, and nothing in the
// database lost or half-changed; after a fault, resume completes.

const shipped = loadPlan(join(import.meta.dirname, '../plans/feature-1.yaml')).plan as any

describe.skipIf(!serverUrl)('bad input and faults (real server)', () => {
  let target: TestTarget
  let db: Database
  let fake: FakeOpenAI
  beforeAll(async () => {
    target = await createTarget('postgres')
    db = await target.open()
    await initDemo(db, 3000)
    fake = await startFakeOpenAI()
  })
  afterAll(async () => {
    await fake?.close()
    await db?.close()
    await target?.drop()
  })
  const planFile = (change: (p: any) => void) => {
    const dir = tempDir()
    const plan = structuredClone(shipped)
    plan.embedding.provider = 'openai'
    plan.criteria.relevance_recall_at_k = null
    change(plan)
    writeFileSync(join(dir, 'plan.yaml'), stringify(plan))
    return { dir, plan: join(dir, 'plan.yaml'), sessions: join(dir, 'sessions') }
  }
  const env = () => ({ DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url })
  const objects = async () =>
    (
      await db.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'runner') + (SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%hnsw%') + (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) AS n`,
      )
    ).rows[0]!.n

  it('names a column the table does not have, exits 2, and changes nothing', async () => {
    const { plan, sessions } = planFile((p) => (p.target.tables[0].text_columns = ['title', 'body']))
    const before = await objects()
    const run = await runCli(['start', plan, '--sessions-dir', sessions], { env: env() })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain(
      `target.tables[0].text_columns[1]: public.atoms has no column "body" (it has: id, topic_id, title, content, created_at, embedding)`,
    )
    expect(run.stderr).toContain('nothing was changed')
    expect(run.stderr).not.toMatch(/\n\s+at /)
    expect(await objects()).toBe(before)
  })

  it('on a database without pgvector: the diagnosis says so, the index batch stops clearly, nothing is created', async () => {
    const bare = await createTarget('postgres')
    const bareDb = await bare.open()
    try {
      await bareDb.exec(`CREATE TABLE docs (id int PRIMARY KEY, body text, embedding real[]); INSERT INTO docs VALUES (1, 'one', NULL)`)
      const { plan, sessions } = planFile((p) => {
        p.target.tables = [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }]
      })
      const run = await runCli(['start', plan, '--sessions-dir', sessions], { env: { ...env(), DATABASE_URL: bare.url! } })
      // The target cannot take the plan as it is: exit 2, as for any refusal before a change.
      expect(run.exitCode, run.all).toBe(2)
      expect(run.stderr).toContain('Semantic search cannot work: the pgvector extension is not installed in this database.')
      expect(run.stderr).toContain(
        'target.tables[0].embedding_column: public.docs.embedding is real[], not vector(1536) (pgvector is not installed in this database: CREATE EXTENSION vector)',
      )
      expect(run.stderr).not.toMatch(/\n\s+at /)
      const created = await bareDb.query(
        `SELECT nspname FROM pg_namespace WHERE nspname = 'runner' UNION ALL SELECT indexname FROM pg_indexes WHERE tablename = 'docs' AND indexname <> 'docs_pkey' UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal`,
      )
      expect(created.rows).toEqual([])
    } finally {
      await bareDb.close()
      await bare.drop()
    }
  })

  it('names a table that does not exist', async () => {
    const { plan, sessions } = planFile((p) => (p.target.tables[2].table = 'topicz'))
    const run = await runCli(['start', plan, '--sessions-dir', sessions], { env: env() })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain('target.tables[2].table: table public.topicz does not exist in the target database')
  })

  it('runs the index batch again when the connection building an index is cut, rebuilding the invalid leftover', async () => {
    const { plan, sessions } = planFile((p) => {
      p.batches = p.batches.slice(0, 2) // diagnose, index
      p.index = { ...p.index, m: 48, ef_construction: 400 } // a build slow enough to be caught in the act
    })
    await db.exec(`DROP INDEX IF EXISTS atoms_embedding_hnsw; DROP INDEX IF EXISTS messages_embedding_hnsw; DROP INDEX IF EXISTS topics_embedding_hnsw;
      UPDATE atoms SET embedding = (SELECT array_agg(sin(atoms.id * g))::vector FROM generate_series(1, 1536) g) WHERE embedding IS NULL`)
    const child = runCli(['start', plan, '--sessions-dir', sessions], { env: env() })
    let terminated = 0
    for (let i = 0; i < 400 && terminated === 0; i++) {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'CREATE INDEX CONCURRENTLY%atoms%' AND state = 'active'`,
      )
      terminated = rows[0]!.n
      if (!terminated) await sleep(25)
    }
    expect(terminated).toBe(1)
    const cut = await child
    expect(cut.exitCode, cut.all).toBe(0)
    expect(cut.stderr).toMatch(/batch index: transient database error \(.*terminat.*\); running it again from its checkpoint/i)
    expect(cut.stderr).not.toMatch(/\n\s+at /)
    const output = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'batches/02-index/output.json'), 'utf8'))
    expect(output.indexes[0]).toMatchObject({ name: 'atoms_embedding_hnsw', action: 'rebuilt', valid: true })
    expect((await db.query(`SELECT 1 FROM pg_index WHERE NOT indisvalid`)).rows).toEqual([])
  })

  it('survives its connections being cut mid-backfill, or stops with a checkpoint and a clear message that resume completes', async () => {
    const { plan, sessions } = planFile((p) => {
      p.embedding.batch_size = 100
      p.validate = { ...p.validate, latency_queries: 20, exact_queries: 5 }
    })
    await db.exec('UPDATE atoms SET embedding = NULL; UPDATE messages SET embedding = NULL')
    fake.delayMs = 40
    const child = runCli(['start', plan, '--with-worker', '--sessions-dir', sessions], { env: env() })
    const cursor = () => {
      if (!existsSync(sessions) || sessionFolders(sessions).length === 0) return 0
      const file = join(sessions, sessionFolders(sessions)[0]!, 'batch-progress.json')
      return existsSync(file) ? Number(JSON.parse(readFileSync(file, 'utf8')).backfill?.cursor?.written?.['public.atoms'] ?? 0) : 0
    }
    for (let i = 0; cursor() < 300 && i < 600; i++) await sleep(50)
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'runner' AND pid <> pg_backend_pid()`,
    )
    expect(rows[0]!.n).toBeGreaterThan(0)
    const cut = await child
    expect(cut.stderr).not.toMatch(/\n\s+at /)
    fake.delayMs = 0
    if (cut.exitCode !== 3) {
      // A query was in flight on a cut connection: the batch stops, saying why.
      expect(cut.exitCode, cut.all).toBe(1)
      expect(cut.stderr).toMatch(/batch \w+: failed: .*(terminat|connection)/i)
      const resumed = await runCli(['resume', '--with-worker', '--sessions-dir', sessions], { env: env() })
      expect(resumed.exitCode, resumed.all).toBe(3) // fixed; the worker started for the check is not a deployed one
    }
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM atoms WHERE embedding IS NULL')).rows[0]!.n).toBe(0)
  })
})
