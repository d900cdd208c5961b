import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateDemo, demoLabels } from '../src/demo/generateDemo.ts'
import { SUBJECTS } from '../src/demo/corpus.ts'
import { createTarget, targetKinds, tempDir, type TestTarget } from './helpers/databases.ts'
import { chainedBatches, writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'

describe('the demo corpus', () => {
  it('is deterministic and labels each query with the rows built from its fact', () => {
    const a = generateDemo(500)
    expect(generateDemo(500)).toEqual(a)
    expect(a.atoms.length + a.messages.length).toBe(500)
    const labels = demoLabels(a)
    const first = labels.find((l) => l.table === 'atoms' && l.query === SUBJECTS[0]!.facts[0]!.query)!
    expect(first.relevant_ids.length).toBeGreaterThan(0)
    for (const id of first.relevant_ids) {
      const atom = a.atoms.find((x) => x.id === id)!
      expect(SUBJECTS[0]!.facts[0]!.paraphrases.some((p) => atom.content.includes(p))).toBe(true)
    }
  })

  it('asks its queries in words other than the rows use', () => {
    // A query shares few words with its own fact's sentences: relevance needs meaning, not matching.
    const words = (s: string) =>
      new Set(
        s
          .toLowerCase()
          .match(/[a-z]+/g)!
          .filter((w) => w.length > 3),
      )
    let overlapping = 0
    for (const fact of SUBJECTS.flatMap((s) => s.facts)) {
      const query = words(fact.query)
      const text = words(fact.paraphrases.join(' '))
      const shared = [...query].filter((w) => text.has(w)).length
      if (shared / query.size > 0.5) overlapping++
    }
    expect(overlapping).toBeLessThanOrEqual(4)
  })
})

describe.each(targetKinds)('runner demo init on %s', (kind) => {
  let target: TestTarget
  beforeAll(async () => {
    target = await createTarget(kind)
  })
  afterAll(async () => target?.drop())

  it('creates the broken app: exact counts, NULL embeddings, no vector index, no trigger; a second run changes nothing', async () => {
    const labels = join(tempDir(), 'labels.json')
    const args = [
      'demo',
      'init',
      '--rows',
      '1000',
      '--labels',
      labels,
      ...(target.url ? ['--database', target.url] : ['--embedded', target.path!]),
    ]
    const run = await runCli([...args], { env: { DATABASE_URL: '' } })
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.stderr).toContain('created 40 topics, 600 atoms, 400 messages')

    const db = await target.open()
    const counts = await db.query<Record<string, number>>(`
      SELECT (SELECT count(*) FROM topics) AS topics, (SELECT count(*) FROM atoms) AS atoms, (SELECT count(*) FROM messages) AS messages,
             (SELECT count(embedding) FROM atoms) + (SELECT count(embedding) FROM messages) + (SELECT count(embedding) FROM topics) AS embedded,
             (SELECT count(*) FROM pg_indexes WHERE indexdef ILIKE '%hnsw%' OR indexdef ILIKE '%ivfflat%') AS vector_indexes,
             (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal) AS triggers`)
    expect(counts.rows[0]).toEqual({ topics: 40, atoms: 600, messages: 400, embedded: 0, vector_indexes: 0, triggers: 0 })
    const type = await db.query<{ t: string }>(
      `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'atoms'::regclass AND attname = 'embedding'`,
    )
    expect(type.rows[0]!.t).toBe('vector(1536)')
    await db.close()

    const written = JSON.parse(readFileSync(labels, 'utf8')) as { table: string; relevant_ids: number[] }[]
    expect(written.filter((l) => l.table === 'atoms')).toHaveLength(40)
    expect(written.find((l) => l.table === 'atoms')!.relevant_ids).toHaveLength(15)

    const again = await runCli([...args], { env: { DATABASE_URL: '' } })
    expect(again.exitCode).toBe(0)
    expect(again.stderr).toContain('already exist (40 topics, 600 atoms, 400 messages); left as they are')
  })

  it('rejects a bad --rows with exit 2 and no stack trace', async () => {
    const run = await runCli(['demo', 'init', '--rows', 'lots'])
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toBe('runner: --rows: expected a whole number from 1 to 10000000, got "lots"')
  })
})

describe("the runner's folders in the application's repository", () => {
  it('.runner/ and sessions/ carry their own .gitignore: git status stays clean after a demo and a session', async () => {
    const repo = tempDir()
    await execa('git', ['init', '-q'], { cwd: repo })
    const init = await runCli(['demo', 'init', '--rows', '30'], { cwd: repo, env: { DATABASE_URL: '' } })
    expect(init.exitCode, init.all).toBe(0)
    expect(readFileSync(join(repo, '.runner/.gitignore'), 'utf8')).toMatch(/^\*$/m)
    const shipped = loadPlan('plans/feature-1.yaml').plan
    const plan = writePlan(repo, { ...shipped, batches: chainedBatches('diagnose') })
    const run = await runCli(['start', plan, '--sessions-dir', 'sessions'], { cwd: repo, env: { DATABASE_URL: '' } })
    expect(run.exitCode, run.all).toBe(0)
    expect(readFileSync(join(repo, 'sessions/.gitignore'), 'utf8')).toMatch(/^\*$/m)
    const status = await execa('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: repo })
    expect(status.stdout.trim()).toBe(`?? ${basename(plan)}`)
  })
})
