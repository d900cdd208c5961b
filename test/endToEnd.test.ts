import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { PNG } from 'pngjs'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionState } from '../src/checkpoint/session.ts'
import { initDemo } from '../src/demo/initDemo.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { runCli } from './helpers/runCli.ts'

// The whole shipped plan, as a user runs it, on the demo app in its broken state.

const root = join(import.meta.dirname, '..')
const shipped = loadPlan(join(root, 'plans/feature-1.yaml')).plan

/** The shipped plan with its embedded database and labels moved into a temporary folder. */
function planIn(dir: string, change: (plan: any) => void = () => {}): string {
  const raw = structuredClone(shipped) as any
  raw.target.embedded = { path: join(dir, 'embedded'), demo_rows: 400 }
  raw.validate = { ...raw.validate, latency_queries: 40, exact_queries: 10 }
  change(raw)
  const path = join(dir, 'plan.yaml')
  writeFileSync(path, stringify(raw))
  return path
}

const stateOf = (sessions: string) =>
  JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, 'coordination-state.json'), 'utf8')) as SessionState
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())

describe('the whole plan on the embedded demo database', () => {
  const dir = tempDir()
  const sessions = join(dir, 'sessions')

  it('diagnoses, indexes, embeds, validates: every criterion met, exit 0', async () => {
    const run = await runCli(['start', planIn(dir), '--sessions-dir', sessions], {
      cwd: dir,

      env: { DATABASE_URL: '', OPENAI_API_KEY: '' },
    })
    expect(run.exitCode, run.all).toBe(0)
    expect(run.stderr).toContain('creating the demo application in its broken state: 400 rows')
    expect(run.stderr).toContain('embedding provider: local')
    const state = stateOf(sessions)
    expect(state.batches.map((b) => b.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'completed'])
    expect(state.criteria!.map((c) => [c.id, c.passed])).toEqual([
      ['no_null_embeddings', true],
      ['hnsw_index_on_every_column', true],
      ['explain_uses_index', true],
      ['latency_p95', true],
      ['relevance', true],
      ['auto_embed', true],
    ])
    expect(state.criteria![0]!.measured).toBe('0 of 440 (atoms 0, messages 0, topics 0)')
    // The local provider is free to repeat: its batches go straight to their writes, unsaved.
    const backfill = state.batches.find((b) => b.step === 'backfill')!
    const output = JSON.parse(readFileSync(join(sessions, sessionFolders(sessions)[0]!, backfill.output_path!), 'utf8'))
    expect(output.stages.embedding).toBeGreaterThan(0)
    expect(output.stages.saving).toBe(0)
  })

  it('writes a report.html that renders in headless Chromium with no console errors and is not blank', async () => {
    const session = join(sessions, sessionFolders(sessions)[0]!)
    const html = readFileSync(join(session, 'report.html'), 'utf8')
    expect(html).not.toMatch(/<script|<link|src="http|href="http/) // self-contained
    expect(html.match(/<figure>/g)).toHaveLength(2) // the latency and the recall charts
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    })
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } })
      const problems: string[] = []
      page.on('console', (m) => m.type() === 'error' && problems.push(m.text()))
      page.on('pageerror', (e) => problems.push(e.message))
      await page.goto(`file://${join(session, 'report.html')}`)
      expect(await page.locator('h1').textContent()).toBe('Core LLM Infrastructure (pgvector Fix)')
      expect(await page.locator('#criteria td.pass').count()).toBe(6)
      const chart = await page.locator('svg').first().boundingBox()
      expect(chart!.width).toBeGreaterThan(300)
      const png = PNG.sync.read(await page.screenshot({ fullPage: true }))
      const colours = new Set<number>()
      for (let i = 0; i < png.data.length; i += 4 * 97) colours.add(png.data.readUInt32BE(i))
      expect(colours.size).toBeGreaterThan(20) // text, bars and lines, not one flat colour
      expect(problems).toEqual([])
    } finally {
      await browser.close()
    }
  })
})

describe.skipIf(!serverUrl)('the whole plan on the real server', () => {
  let target: TestTarget
  const labels = join(tempDir(), 'labels.json')
  beforeAll(async () => {
    target = await createTarget('postgres')
    const db = await target.open()
    writeFileSync(labels, JSON.stringify((await initDemo(db, 600)).labels))
    await db.close()
  })
  afterAll(async () => target?.drop())

  it('meets every criterion, and writes no key or password anywhere in the session', async () => {
    const dir = tempDir()
    const sessions = join(dir, 'sessions')
    const password = 'pw-Secret-4711'
    const url = new URL(target.url!)
    url.password = password // trust auth ignores it; the runner must still never write it
    const secrets = { OPENAI_API_KEY: 'sk-test-SECRET-openai-0042', ANTHROPIC_API_KEY: 'sk-ant-SECRET-anthropic-0042' }
    const plan = planIn(dir, (p) => (p.validate.labelled_queries = labels))
    const run = await runCli(['start', plan, '--provider', 'local', '--with-worker', '--sessions-dir', sessions], {
      cwd: dir,

      env: { DATABASE_URL: url.toString(), ...secrets, ANTHROPIC_BASE_URL: 'http://127.0.0.1:9' },
    })
    // Every criterion met; the worker --with-worker starts for the check is not a deployed one: exit 3 until one is.
    expect(run.exitCode, run.all).toBe(3)
    expect(stateOf(sessions).criteria!.every((c) => c.passed || c.id === 'auto_embed')).toBe(true)
    expect(stateOf(sessions).criteria!.find((c) => c.id === 'auto_embed')?.pending).toContain('a worker to deploy')
    expect(run.stderr).toContain(`target: postgres postgres@127.0.0.1:5432/`)
    for (const secret of [password, ...Object.values(secrets)]) {
      expect(run.all).not.toContain(secret)
      for (const file of filesUnder(sessions)) expect(readFileSync(file, 'utf8'), file).not.toContain(secret)
    }
  })

  it('on a database left without an index, the index criteria fail with their measured values and the exit code is 1', async () => {
    const dir = tempDir()
    const sessions = join(dir, 'sessions')
    const db = await target.open()
    await db.exec('DROP INDEX IF EXISTS atoms_embedding_hnsw')
    await db.close()
    const plan = planIn(
      dir,
      (p) =>
        (p.batches = p.batches
          .filter((b: any) => b.step !== 'index')
          .map((b: any) => ({ ...b, depends_on: b.depends_on.filter((d: string) => d !== 'index') }))),
    )
    const run = await runCli(['start', plan, '--provider', 'local', '--with-worker', '--sessions-dir', sessions], {
      cwd: dir,

      env: { DATABASE_URL: target.url! },
    })
    expect(run.exitCode, run.all).toBe(1)
    const criteria = Object.fromEntries(stateOf(sessions).criteria!.map((c) => [c.id, c]))
    expect(criteria.hnsw_index_on_every_column).toMatchObject({ passed: false, measured: '2 of 3' })
    expect(criteria.no_null_embeddings!.passed).toBe(true)
    expect(run.stderr).toMatch(/criteria not met: hnsw_index_on_every_column \(2 of 3\)/)
  })
})
