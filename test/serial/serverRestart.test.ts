import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { sessionFolders } from '../helpers/sessions.ts'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../../src/db/database.ts'
import { initDemo } from '../../src/demo/initDemo.ts'
import { loadPlan } from '../../src/plan/loadPlan.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from '../helpers/databases.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fakeOpenAI.ts'
import { runCli } from '../helpers/runCli.ts'

// The PostgreSQL server restarted in the middle of a backfill. This file runs alone (the
// "serial" project), after the main suite: a restart would cut every other test's connections.

async function restartServer() {
  const { stdout } = await execa('ls', ['/etc/postgresql'])
  await execa('pg_ctlcluster', ['--skip-systemctl-redirect', stdout.trim().split('\n')[0]!, 'main', 'restart'])
}

describe.skipIf(!serverUrl)('the database restarted mid-backfill (real server)', () => {
  let target: TestTarget
  let fake: FakeOpenAI
  beforeAll(async () => {
    target = await createTarget('postgres')
    const db = await target.open()
    await initDemo(db, 3000)
    await db.close()
    fake = await startFakeOpenAI()
  })
  afterAll(async () => {
    await fake?.close()
    await target?.drop()
  })

  it('retries from its checkpoint and completes, with every row embedded', async () => {
    const dir = tempDir()
    const plan = structuredClone(loadPlan(join(import.meta.dirname, '../../plans/feature-1.yaml')).plan) as any
    plan.embedding = { ...plan.embedding, provider: 'openai', batch_size: 100 }
    plan.criteria.relevance_recall_at_k = null
    plan.validate = { ...plan.validate, latency_queries: 20, exact_queries: 5 }
    writeFileSync(join(dir, 'plan.yaml'), stringify(plan))
    const sessions = join(dir, 'sessions')
    fake.delayMs = 40
    const child = runCli(['start', join(dir, 'plan.yaml'), '--with-worker', '--sessions-dir', sessions], {
      env: { DATABASE_URL: target.url!, OPENAI_API_KEY: fake.key, OPENAI_BASE_URL: fake.url },
    })
    const written = () => {
      const session = existsSync(sessions) ? sessionFolders(sessions)[0] : undefined
      const file = session && join(sessions, session, 'batch-progress.json')
      if (!file || !existsSync(file)) return 0
      const counts = JSON.parse(readFileSync(file, 'utf8')).backfill?.cursor?.written ?? {}
      return Object.values(counts as Record<string, number>).reduce((a, b) => a + b, 0)
    }
    for (let i = 0; written() < 300 && i < 1200; i++) await sleep(25)
    expect(written()).toBeGreaterThanOrEqual(300)
    await restartServer()
    const result = await child
    expect(result.exitCode, result.all).toBe(3) // fixed; the worker started for the check is not a deployed one
    expect(result.stderr).toMatch(/batch backfill: transient database error .*running it again from its checkpoint/)
    const db: Database = await target.open()
    const nulls = await db.query<{ n: number }>(
      `SELECT ((SELECT count(*) FROM atoms WHERE embedding IS NULL) + (SELECT count(*) FROM messages WHERE embedding IS NULL))::int AS n`,
    )
    await db.close()
    expect(nulls.rows[0]!.n).toBe(0)
  })
})
