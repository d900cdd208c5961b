import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describeUrl } from '../src/db/connectPostgres.ts'
import { readEmbeddedTemplate, writeEmbeddedTemplate } from '../src/db/embeddedTemplate.ts'
import { EMBEDDED_SHARED_BUFFERS, openEmbedded } from '../src/db/openEmbedded.ts'
import type { Database } from '../src/db/database.ts'
import { quoteIdent, quoteQualified } from '../src/db/quote.ts'
import { collectGarbage } from '../src/collectGarbage.ts'
import { countEmbeddings } from '../src/coordinator/guards.ts'
import { type RunsByPlan, runAt } from '../src/steps/validate/measureSearch.ts'
import { resolveTargets } from '../src/db/target.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { createTarget, serverUrl, targetKinds, tempDir, type TestTarget } from './helpers/databases.ts'
import { testPlan, writePlan } from './helpers/plans.ts'
import { waitFor as until } from './helpers/waitFor.ts'

describe('describeUrl', () => {
  it('never shows the password', () => {
    const text = describeUrl('postgres://app:s3cr%40t@db.internal:6543/prod?sslmode=require')
    expect(text).toBe('postgres app@db.internal:6543/prod')
    expect(text).not.toContain('s3cr')
  })
})

describe.each(targetKinds)('database interface on %s', (kind) => {
  let target: TestTarget
  let db: Database
  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
    await db.exec('CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE things (id int PRIMARY KEY, label text, embedding vector(3))')
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  it('takes values as parameters and returns counts as numbers', async () => {
    await db.query('INSERT INTO things (id, label, embedding) VALUES ($1, $2, $3)', [1, "it's; DROP TABLE things", '[1,2,3]'])
    const { rows } = await db.query<{ n: number; label: string }>('SELECT count(*) AS n, max(label) AS label FROM things')
    expect(rows[0]).toEqual({ n: 1, label: "it's; DROP TABLE things" })
  })

  it('commits a transaction, and rolls one back on error', async () => {
    await db.transaction(async (tx) => tx.query('INSERT INTO things (id, label) VALUES (2, $1)', ['kept']))
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO things (id, label) VALUES (3, $1)', ['rolled back'])
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    const { rows } = await db.query<{ id: number }>('SELECT id FROM things ORDER BY id')
    expect(rows.map((r) => r.id)).toEqual([1, 2])
  })

  it('takes vectors as one vector[] parameter, to float4 precision', async () => {
    const vectors = [[1, -2.5, 0], [0.1, 1e-8, 3.4e38], [Math.PI], Array.from({ length: 1536 }, (_, i) => Math.sin(i))]
    const { rows } = await db.query<{ values: number[] }>(
      'SELECT v::real[]::float8[] AS values FROM unnest($1::vector[]) WITH ORDINALITY AS u(v, n) ORDER BY n',
      [await db.vectorArray(vectors)],
    )
    expect(rows.map((r) => r.values.map(Number))).toEqual(vectors.map((v) => v.map(Math.fround)))
    // On the server they travel in binary: the same bytes as pgvector's own binary output (vector_send).
    if (kind === 'postgres') {
      const { rows: sent } = await db.query<{ bytes: Buffer }>('SELECT vector_send($1::vector) AS bytes', ['[1,-2.5,0]'])
      const param = (await db.vectorArray([[1, -2.5, 0]])) as Buffer
      expect(param.subarray(24)).toEqual(sent[0]!.bytes)
    }
  })

  it('refuses writes inside a read-only transaction', async () => {
    await expect(db.transaction((tx) => tx.query('DELETE FROM things'), { readOnly: true })).rejects.toThrow(/read-only transaction/)
    const { rows } = await db.transaction((tx) => tx.query<{ n: number }>('SELECT count(*) AS n FROM things'), { readOnly: true })
    expect(rows[0]!.n).toBe(2)
  })

  it('delivers NOTIFY to a listener, until it stops listening', async () => {
    const received: string[] = []
    const listener = await db.listen('runner_test', (payload) => received.push(payload))
    await db.query("SELECT pg_notify('runner_test', $1)", ['hello'])
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(received).toEqual(['hello'])
    await listener.close()
    await db.query("SELECT pg_notify('runner_test', 'after')")
    await new Promise((r) => setTimeout(r, 100))
    expect(received).toEqual(['hello'])
  })

  it('quotes identifiers from a plan, so a name carrying SQL does no harm', async () => {
    const evil = 'x; drop table things; --'
    await db.exec(`CREATE TABLE ${quoteIdent(evil)} (id int PRIMARY KEY, "body"" text" text, ${quoteIdent('emb')} real[])`)
    await db.query(`INSERT INTO ${quoteQualified('public', evil)} (id, emb) VALUES (1, ARRAY[1]::real[])`)
    const dir = tempDir()
    const plan = testPlan()
    plan.target.tables = [{ table: evil, key: 'id', text_columns: ['body" text'], embedding_column: 'emb', distance: 'cosine' }]
    const { plan: loaded } = loadPlan(writePlan(dir, plan))
    expect(await countEmbeddings(db, await resolveTargets(db, loaded))).toEqual({ [`public.${evil}.emb`]: 1 })
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'things'`)
    expect(rows[0]!.n).toBe(1)
  })

  it('a sweep times a plan that uses no index once, and a plan with the HNSW index at every setting', async () => {
    await db.exec(`CREATE TABLE swept (id int PRIMARY KEY, embedding vector(3))`)
    await db.exec(`INSERT INTO swept SELECT g, ARRAY[g % 7, g % 11, g % 13]::real[]::vector FROM generate_series(1, 200) g`)
    const query = {
      name: 'nearest',
      sql: 'SELECT id AS key FROM swept ORDER BY embedding <-> $1 LIMIT 5',
      params: (v: string) => [v],
      limit: 5,
    }
    const vectors = ['[1,2,3]', '[3,2,1]']
    const runs: RunsByPlan = new Map()
    const at10 = await runAt(db, 'swept', query, vectors, { ef_search: 10, iterative_scan: 'off' }, false, null, runs)
    const at40 = await runAt(db, 'swept', query, vectors, { ef_search: 40, iterative_scan: 'off' }, false, null, runs)
    expect([at10.scan, at40.scan]).toEqual(['sequential', 'sequential'])
    expect(at40.ms).toBe(at10.ms) // the same run, not timed again
    expect(runs.size).toBe(1)
    await db.exec(`CREATE INDEX swept_hnsw ON swept USING hnsw (embedding vector_l2_ops)`)
    const forced = await runAt(db, 'swept', query, vectors, { ef_search: 10, iterative_scan: 'off' }, true, null, runs)
    const again = await runAt(db, 'swept', query, vectors, { ef_search: 40, iterative_scan: 'off' }, true, null, runs)
    expect([forced.scan, again.scan]).toEqual(['index', 'index'])
    expect(again.ms).not.toBe(forced.ms)
    expect(runs.size).toBe(1)
  })
})

describe.skipIf(!serverUrl)('a LISTEN connection on the real server', () => {
  let target: TestTarget
  let db: Database
  beforeAll(async () => {
    target = await createTarget('postgres')
    db = await target.open()
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  const listeningPids = async () =>
    (
      await db.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN "runner_reconnect"' AND pid <> pg_backend_pid()`,
      )
    ).rows.map((r) => r.pid)

  it('is opened again after its backend is terminated, says it may have missed some, and hears NOTIFY again', async () => {
    const received: string[] = []
    const listener = await db.listen('runner_reconnect', (payload) => received.push(payload))
    try {
      const [first] = await until('the LISTEN backend', async () => {
        const pids = await listeningPids()
        return pids.length === 1 && pids
      })
      await db.query('SELECT pg_terminate_backend($1)', [first])
      await until('the listener to notice', () => !listener.connected())
      await until('the LISTEN to be re-established', async () => {
        const pids = await listeningPids()
        return listener.connected() && pids.length === 1 && pids[0] !== first
      })
      expect(received).toEqual(['']) // the wake-up after reconnecting: notifications meanwhile were lost
      await db.query("SELECT pg_notify('runner_reconnect', 'after')")
      await until('the notification', () => received.includes('after'))
    } finally {
      await listener.close()
    }
    expect(listener.connected()).toBe(false)
  })
})

describe('collectGarbage', () => {
  it('runs a full collection: 100 MB left unreferenced is freed at once', () => {
    let garbage: number[][] | null = Array.from({ length: 25 }, (_, i) => new Array<number>(500_000).fill(i + 0.5)) // 4 MB of doubles each
    const held = process.memoryUsage().heapUsed
    expect(garbage.length).toBe(25)
    garbage = null
    collectGarbage()
    expect(process.memoryUsage().heapUsed).toBeLessThan(held - 80 * 2 ** 20)
  })
})

describe("the embedded database's template (npm run build writes it)", () => {
  it("a new folder opens from the build's dump: initialized as initdb leaves it, with pgvector, at the embedded shared_buffers", async () => {
    expect(readEmbeddedTemplate(), 'dist/embedded-template.tar.gz: run `npm run build`').toBeInstanceOf(Blob)
    const path = join(tempDir('runner-template-'), 'db')
    const db = await openEmbedded(path)
    try {
      const databases = await db.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY datname')
      expect(databases.rows.map((r) => r.datname)).toEqual(['postgres', 'template0', 'template1'])
      // Nothing but initdb's work: no extension is in the dump, the folder's owner creates it.
      expect((await db.query('SELECT extname FROM pg_extension ORDER BY extname')).rows).toEqual([{ extname: 'plpgsql' }])
      await db.exec(`CREATE EXTENSION vector; CREATE TABLE t (id int, v vector(3)); CREATE INDEX ON t USING hnsw (v vector_l2_ops)`)
      await db.exec(`INSERT INTO t VALUES (1, '[1,2,3]'), (2, '[3,2,1]')`)
      expect((await db.query<{ id: number }>(`SELECT id FROM t ORDER BY v <-> '[3,2,2]' LIMIT 1`)).rows).toEqual([{ id: 2 }])
      expect((await db.query('SHOW shared_buffers')).rows).toEqual([{ shared_buffers: EMBEDDED_SHARED_BUFFERS }])
    } finally {
      await db.close()
    }
    expect(existsSync(join(path, 'PG_VERSION'))).toBe(true)
  })

  it('is used only with the PGlite version that wrote it', async () => {
    const dir = tempDir('runner-template-dist-')
    await writeEmbeddedTemplate(dir)
    expect(readEmbeddedTemplate(dir)).toBeInstanceOf(Blob)
    writeFileSync(join(dir, 'embedded-template.json'), JSON.stringify({ pglite: '0.0.1' }))
    expect(readEmbeddedTemplate(dir)).toBeUndefined()
    expect(readEmbeddedTemplate(tempDir('runner-template-none-'))).toBeUndefined()
  })
})
