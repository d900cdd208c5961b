import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { inventedNumbers } from '../src/agents/narrateWithAnthropic.ts'
import { writeBatchReport, type BatchReportInput } from '../src/agents/writeBatchReport.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { startFakeAnthropic, type FakeAnthropic } from './helpers/fakeAnthropic.ts'

const batch = loadPlan('plans/feature-1.yaml').plan.batches[1]!
const input: BatchReportInput = {
  batch,
  summary: '3 created; 3 of 3 valid and usable',
  details: '| atoms | atoms_embedding_hnsw | 31.9 s | 881 MB |',
  startedAt: '2026-11-24T10:00:00.000Z',
  endedAt: '2026-11-24T10:00:32.000Z',
}

describe('the batch agent', () => {
  let fake: FakeAnthropic
  beforeEach(async () => {
    fake = await startFakeAnthropic()
  })
  afterEach(async () => fake.close())
  const env = () => ({ ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: fake.url })

  it('sends nothing when narration was not chosen, even with a key in the environment', async () => {
    const report = await writeBatchReport(input, { model: 'claude-test', narrate: false }, env())
    expect(report).toContain('| atoms | atoms_embedding_hnsw | 31.9 s | 881 MB |')
    expect(report).not.toContain('account')
    expect(fake.requests).toHaveLength(0)
  })

  it('writes the template alone when narration was chosen but no key is set, and says so', async () => {
    const report = await writeBatchReport(input, { model: 'claude-test', narrate: true }, {})
    expect(report).toContain('Narration was chosen, but ANTHROPIC_API_KEY is not set')
    expect(report).toContain('# Batch index: Create HNSW Vector Indexes')
    expect(report).toContain('| atoms | atoms_embedding_hnsw | 31.9 s | 881 MB |')
    expect(report).not.toContain('account')
    expect(fake.requests).toHaveLength(0)
  })

  it("adds the agent's narrative through the real SDK, keeping every figure from the output", async () => {
    fake.reply = 'The indexes now match the distance the application queries with, so searches no longer read every row.'
    const report = await writeBatchReport(input, { model: 'claude-test', narrate: true }, env())
    expect(report).toContain("## database-reliability-engineer's account")
    expect(report).toContain(fake.reply)
    expect(report).toContain('| atoms | atoms_embedding_hnsw | 31.9 s | 881 MB |')
    expect(fake.requests[0]).toMatchObject({ model: 'claude-test', apiKey: 'sk-ant-test' })
    expect(fake.requests[0]!.system).toContain('You are the database-reliability-engineer')
    expect(fake.requests[0]!.content).toContain('Result: 3 created')
  })

  it('falls back to the template when the API fails, and says so', async () => {
    fake.status = 500
    const logged: string[] = []
    const report = await writeBatchReport(input, { model: 'claude-test', narrate: true }, env(), (m) => logged.push(m))
    expect(report).toMatch(/_The Anthropic API could not be used \(.*500.*\); this report is the deterministic template\._/)
    expect(report).toContain('| atoms | atoms_embedding_hnsw | 31.9 s | 881 MB |')
    expect(fake.requests.length).toBe(3) // the SDK's own two retries, then the fallback
    expect(logged[0]).toContain('report written from the template')
  })

  it('refuses a narrative that states a number the measurements do not contain', async () => {
    fake.reply = 'The build took about 45 seconds and queries are now 12x faster.'
    const report = await writeBatchReport(input, { model: 'claude-test', narrate: true }, env())
    expect(report).toMatch(/numbers that are not in the measurements \(45, 12\)/)
    expect(report).not.toContain('12x faster')
  })

  it("keeps a narrative that cites the application's source as the diagnosis read it, and refuses one that cites a line it did not", async () => {
    const diagnose = loadPlan('plans/feature-1.yaml').plan.batches[0]!
    const withSource = {
      ...input,
      batch: diagnose,
      details: '## Source references\n\n- `app/atoms.py:11` (commented out write): `# atom.embedding = generate_embedding(text)`',
    }
    fake.reply = 'The create path lost its call: see app/atoms.py:11, where the write is commented out.'
    expect(await writeBatchReport(withSource, { model: 'claude-test', narrate: true }, env())).toContain(fake.reply)
    fake.reply = 'The create path lost its call in app/atoms.py:11, and app/services.py:11 never embeds.'
    const refused = await writeBatchReport(withSource, { model: 'claude-test', narrate: true }, env())
    expect(refused).toContain("the narrative cites app/services.py:11, which the batch did not find in the application's source")
    expect(refused).not.toContain('never embeds')
  })

  it('tells numbers from names', () => {
    expect(inventedNumbers('p95 and ef_search are fine; 3 tables, 31.9 s', '3 of 3; 31.9 s')).toEqual([])
    expect(inventedNumbers('about 1,000 rows', '999 rows')).toEqual(['1000'])
  })
})
