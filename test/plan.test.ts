import { describe, expect, it } from 'vitest'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { orderBatches } from '../src/plan/orderBatches.ts'
import { tempDir } from './helpers/databases.ts'
import { testPlan, writePlan } from './helpers/plans.ts'

const dir = tempDir()
type PlanObject = ReturnType<typeof testPlan> & Record<string, any>

function planWith(change: (plan: PlanObject) => void): string {
  const plan = structuredClone(testPlan()) as PlanObject
  change(plan)
  return writePlan(dir, plan, `plan-${Math.random().toString(36).slice(2)}.yaml`)
}

function errorOf(path: string): string {
  try {
    loadPlan(path)
  } catch (error) {
    expect((error as { exitCode?: number }).exitCode).toBe(2)
    return (error as Error).message
  }
  throw new Error('the plan was accepted')
}

describe('loadPlan', () => {
  it('accepts the shipped plan and fills defaults', () => {
    const { plan, sha256 } = loadPlan('plans/feature-1.yaml')
    expect(plan.batches.map((b) => b.step)).toEqual(['diagnose', 'index', 'pipeline', 'backfill', 'validate'])
    expect(plan.target.tables.map((t) => t.table)).toEqual(['atoms', 'messages', 'topics'])
    expect(plan.embedding).toMatchObject({ model: 'text-embedding-ada-002', dimensions: 1536 })
    expect(plan.batches[0]!.guards).toEqual({ read_only: true, writes_embeddings: false })
    expect(sha256).toMatch(/^[0-9a-f]{64}$/)
  })

  it('accepts the backfill-first plan, which builds the index after the backfill', () => {
    const { plan } = loadPlan('plans/feature-1-backfill-first.yaml')
    expect(orderBatches(plan.batches).map((b) => b.step)).toEqual(['diagnose', 'pipeline', 'backfill', 'index', 'validate'])
  })

  const invalid: [string, (p: PlanObject) => void, RegExp][] = [
    ['an unknown top-level key', (p) => (p.extra = 1), /:\d+: extra: unknown key/],
    [
      'an unknown key in a batch guard',
      (p) => ((p.batches[0] as any).guards = { readonly: true }),
      /batches\[0\]\.guards\.readonly: unknown key/,
    ],
    ['an unknown step', (p) => ((p.batches[1] as any).step = 'reindex'), /batches\[1\]\.step: .*expected one of/],
    [
      'an unknown dependency',
      (p) => (p.batches[1]!.depends_on = ['nope']),
      /batches\[1\]\.depends_on\[0\]: unknown batch "nope"; the batches are: first, second, third/,
    ],
    ['a self dependency', (p) => (p.batches[1]!.depends_on = ['second']), /batches\[1\]\.depends_on\[0\]: a batch cannot depend on itself/],
    ['a cycle', (p) => ((p.batches[0] as any).depends_on = ['third']), /cycle: first -> third -> second -> first/],
    ['a duplicate batch id', (p) => (p.batches[2]!.id = 'first'), /batches\[2\]\.id: duplicate batch id "first" \(also batches\[0\]\)/],
    ['a batch id that is not a folder name', (p) => (p.batches[0]!.id = 'First Batch'), /batches\[0\]\.id: expected lowercase/],
    ['no tables', (p) => (p.target.tables = []), /target\.tables: expected at least one table/],
    ['an unknown distance', (p) => ((p.target.tables[0] as any).distance = 'dot'), /target\.tables\[0\]\.distance/],
    ['no text columns', (p) => (p.target.tables[0]!.text_columns = []), /target\.tables\[0\]\.text_columns: expected at least one column/],
    ['an empty table name', (p) => (p.target.tables[0]!.table = ''), /target\.tables\[0\]\.table: expected a non-empty name/],
    [
      'a name longer than PostgreSQL allows',
      (p) => (p.target.tables[0]!.key = 'k'.repeat(64)),
      /target\.tables\[0\]\.key: PostgreSQL names are at most 63 bytes/,
    ],
    [
      'a table listed twice',
      (p) => p.target.tables.push({ ...p.target.tables[0]! }),
      /target\.tables\[1\]\.table: table public\.items is listed twice/,
    ],
    ['dimensions as text', (p) => ((p.embedding as any).dimensions = '1536'), /embedding\.dimensions: .*expected number/],
    ['a missing model', (p) => delete (p.embedding as any).model, /embedding\.model/],
    ['a missing batch title', (p) => delete (p.batches[0] as any).title, /batches\[0\]\.title/],
    ['a negative HNSW m', (p) => (p.index = { m: -1 }), /index\.m/],
    ['no batches', (p) => (p.batches = []), /batches: expected at least one batch/],
    ['a misspelt criterion', (p) => (p.criteria = { latency_p95_max: 50 }), /criteria\.latency_p95_max: unknown key/],
  ]
  for (const [name, change, expected] of invalid) {
    it(`rejects ${name}`, () => {
      const path = planWith(change)
      const message = errorOf(path)
      expect(message).toContain(path)
      expect(message).toMatch(expected)
    })
  }

  it('names the line of the offending key', () => {
    const path = writePlan(dir, 'id: x\ntitle: t\ntarget:\n  tables: []\nembedding: {model: m, dimensions: 3}\nbatches: []\n', 'lines.yaml')
    expect(errorOf(path)).toMatch(/lines\.yaml:4: target\.tables/)
  })

  it('rejects YAML that does not parse, with its line', () => {
    expect(errorOf(writePlan(dir, 'id: x\n  title: [unclosed\n', 'broken.yaml'))).toMatch(/broken\.yaml:\d+: not valid YAML/)
  })

  it('rejects duplicate keys instead of keeping the last one', () => {
    expect(errorOf(writePlan(dir, 'id: x\nid: y\n', 'dup.yaml'))).toMatch(/not valid YAML: Map keys must be unique/)
  })

  it('says when the file is missing', () => {
    expect(errorOf(`${dir}/absent.yaml`)).toMatch(/absent\.yaml: cannot read the plan \(no such file\)/)
  })
})

describe('orderBatches', () => {
  it('puts every batch after its dependencies and keeps plan order otherwise', () => {
    const order = orderBatches([
      { id: 'validate', depends_on: ['backfill'] },
      { id: 'diagnose', depends_on: [] },
      { id: 'backfill', depends_on: ['index', 'diagnose'] },
      { id: 'index', depends_on: ['diagnose'] },
      { id: 'docs', depends_on: [] },
    ]).map((b) => b.id)
    expect(order).toEqual(['diagnose', 'index', 'backfill', 'validate', 'docs'])
  })
})
