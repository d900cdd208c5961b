import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { type Browser, chromium } from 'playwright-core'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadPlan } from '../src/plan/loadPlan.ts'
import type { ValidateOutput } from '../src/steps/validate/output.ts'
import { tempDir } from './helpers/databases.ts'
import { runCli } from './helpers/runCli.ts'

// What a reviewer opens: report.html rendered in headless Chromium for a session that met every
// criterion, one with a criterion not met and one that failed; the verdict at the top, the
// headline figures as output.json has them, no text running out of the page, and no session
// file holding a vector literal.

const shipped = loadPlan(join(import.meta.dirname, '../plans/feature-1.yaml')).plan
const dir = tempDir()

/** The shipped plan on one embedded demo database in this test's folder, changed as a case needs. */
function plan(name: string, change: (p: any) => void = () => {}): string {
  const raw = structuredClone(shipped) as any
  raw.target.embedded = { path: join(dir, 'embedded'), demo_rows: 300 }
  raw.validate = { ...raw.validate, latency_queries: 30, exact_queries: 10, rounds: 2 }
  change(raw)
  const path = join(dir, `${name}.yaml`)
  writeFileSync(path, stringify(raw))
  return path
}

async function start(name: string, change?: (p: any) => void) {
  const sessions = join(dir, `sessions-${name}`)
  const run = await runCli(['start', plan(name, change), '--sessions-dir', sessions], {
    cwd: dir,
    env: { DATABASE_URL: '', OPENAI_API_KEY: '' },
  })
  return { run, session: join(sessions, sessionFolders(sessions)[0]!) }
}

describe('what reviewers read (embedded demo, rendered in Chromium)', () => {
  let browser: Browser
  const sessions: Record<'met' | 'not_met' | 'failed', string> = { met: '', not_met: '', failed: '' }

  beforeAll(async () => {
    const met = await start('met')
    expect(met.run.exitCode, met.run.all).toBe(0)
    sessions.met = met.session
    // The same database, validated again against a latency no database meets.
    const notMet = await start('not-met', (p) => {
      p.criteria.latency_p95_ms_max = 0.0001
      p.batches = p.batches.filter((b: any) => b.step === 'validate').map((b: any) => ({ ...b, depends_on: [] }))
    })
    expect(notMet.run.exitCode, notMet.run.all).toBe(1)
    sessions.not_met = notMet.session
    // A plan whose model gives other dimensions than the columns have: refused before the first write.
    const failed = await start('failed', (p) => (p.embedding.dimensions = 8))
    expect(failed.run.exitCode, failed.run.all).toBe(2)
    sessions.failed = failed.session
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    })
  })
  afterAll(async () => browser?.close())

  /** The page as a reviewer sees it at a laptop's width, every section opened; a screenshot is left in the session folder. */
  async function open(session: string) {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } })
    const problems: string[] = []
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()))
    page.on('pageerror', (e) => problems.push(e.message))
    await page.goto(`file://${join(session, 'report.html')}`)
    await page.evaluate(() => {
      for (const d of document.querySelectorAll('details')) d.open = true
    })
    const overflowing = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible' && e.clientWidth > 0)
        .filter((e) => !(e instanceof SVGElement))
        .map((e) => `${e.tagName}: ${(e.textContent ?? '').slice(0, 60)}`),
    )
    const pageOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    await page.screenshot({ path: join(session, 'report.png'), fullPage: true })
    return { page, problems, overflowing, pageOverflow }
  }

  it('a session that met every criterion says so first, with the headline figures of output.json', async () => {
    const { page, problems, overflowing, pageOverflow } = await open(sessions.met)
    expect(await page.locator('#verdict').getAttribute('class')).toBe('met')
    expect(await page.locator('#verdict h2').textContent()).toMatch(/^Met: all \d+ success criteria$/)
    const validation = JSON.parse(readFileSync(join(sessions.met, 'batches/05-validate/output.json'), 'utf8')) as ValidateOutput
    const p50s = validation.tables.map((t) => `${(t.latency!.at_recommended ?? t.latency!.at_default).p50.toFixed(1)} ms`)
    expect(await page.locator('#headline .p50').allTextContents()).toEqual(p50s)
    expect(await page.locator('#headline tr').count()).toBe(1 + validation.tables.length)
    // The next action: each query's measured setting, said where that query runs (tables may differ), or nothing to do.
    const next = (await page.locator('#verdict p').textContent())!
    const settings = validation.tables.filter((t) => t.latency!.apply.length)
    for (const t of settings) expect(next).toContain(`${t.table} nearest-10 ${t.latency!.apply.join('; ')}`)
    if (settings.length === 0) expect(next).toContain('nothing')
    // Every batch's report is in the page, with its EXPLAIN plans.
    expect(await page.locator('details[id^="batch-"]').count()).toBe(5)
    expect(await page.locator('#batch-validate pre').count()).toBeGreaterThan(0)
    expect(overflowing).toEqual([])
    expect(pageOverflow).toBeLessThanOrEqual(0)
    expect(problems).toEqual([])
    const summary = readFileSync(join(sessions.met, 'summary.md'), 'utf8')
    expect(summary.split('\n')[2]).toMatch(/^\*\*Verdict: Met: all \d+ success criteria\.\*\*$/)
  })

  it('a session with a criterion not met names it and its measured value in the verdict', async () => {
    const { page, problems, overflowing } = await open(sessions.not_met)
    expect(await page.locator('#verdict').getAttribute('class')).toBe('not_met')
    const verdict = await page.locator('#verdict h2').textContent()
    expect(verdict).toContain('Not met: query latency p95')
    expect(verdict).toContain('<= 0.0001 ms')
    expect(await page.locator('#criteria td.fail').count()).toBe(1)
    expect(overflowing).toEqual([])
    expect(problems).toEqual([])
  })

  it('a failed session says which batch failed and gives the exact resume command; the failed batch has a report', async () => {
    const { page, problems, overflowing } = await open(sessions.failed)
    expect(await page.locator('#verdict').getAttribute('class')).toBe('failed')
    expect(await page.locator('#verdict h2').textContent()).toMatch(
      /^Failed: batch index stopped: .*the target database cannot take the plan/,
    )
    expect(await page.locator('#verdict p').textContent()).toContain(`runner resume --session ${sessions.failed}`)
    expect(await page.locator('#batch-index').textContent()).toContain('gives 8 dimensions')
    expect(overflowing).toEqual([])
    expect(problems).toEqual([])
  })

  it('no file in any session folder holds a vector literal longer than a few dozen values', () => {
    const files = Object.values(sessions).flatMap((s) =>
      readdirSync(s, { recursive: true, encoding: 'utf8' })
        .map((f) => join(s, f))
        .filter((f) => statSync(f).isFile() && !f.endsWith('.png')),
    )
    expect(files.length).toBeGreaterThan(20)
    const long = /\[(?:\s*-?\d[\d.e+-]*\s*,){40,}/
    expect(files.filter((f) => long.test(readFileSync(f, 'utf8')))).toEqual([])
    // The plans are still there, elided to their first values and their length.
    expect(readFileSync(join(sessions.met, 'batches/01-diagnose/explain.txt'), 'utf8')).toMatch(/,… 1536 values\]'/)
  })
})
