import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { versionBelow } from '../src/db/catalog/readExtension.ts'
import { explainQuery } from '../src/db/catalog/explainQuery.ts'
import { resolveTargets } from '../src/db/target.ts'
import { initDemo } from '../src/demo/initDemo.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { planSchema } from '../src/plan/schema.ts'
import { diagnoseStep } from '../src/steps/diagnose/diagnoseStep.ts'
import { indexStep } from '../src/steps/index/indexStep.ts'
import type { IndexOutput } from '../src/steps/index/output.ts'
import { estimateGraphMb, sizeBuildMemory } from '../src/steps/index/sizeBuildMemory.ts'
import { createTarget, targetKinds, type TestTarget } from './helpers/databases.ts'
import { testPlan } from './helpers/plans.ts'
import { runInProcess } from './helpers/runInProcess.ts'

const registry = new Map<string, any>([
  ['diagnose', diagnoseStep],
  ['index', indexStep],
])
const shipped = loadPlan('plans/feature-1.yaml').plan

/** The shipped plan's first two batches (diagnose, index) on the demo tables. */
function demoIndexPlan(index: Record<string, unknown> = {}) {
  return {
    ...testPlan(),
    target: { tables: shipped.target.tables },
    embedding: { model: 'text-embedding-ada-002', dimensions: 1536 },
    index,
    batches: shipped.batches.slice(0, 2),
  }
}

describe('sizing the build memory', () => {
  it('estimates the graph of 100,000 x 1536 at m=16 near the 781 MB index measured here', () => {
    const mb = estimateGraphMb(100_000, 1536, 4, 16)
    expect(mb).toBeGreaterThan(781)
    expect(mb).toBeLessThan(1200)
    expect(estimateGraphMb(100_000, 1536, 2, 16)).toBeLessThan(mb * 0.6) // half precision halves the vectors
  })

  it("takes the estimate, never less than PostgreSQL's default, capped by the plan and the machine", () => {
    expect(sizeBuildMemory(10, 4096)).toEqual({ estimatedMb: 10, chosenMb: 64 })
    expect(sizeBuildMemory(900, 4096)).toEqual({ estimatedMb: 900, chosenMb: 900 })
    expect(sizeBuildMemory(9000, 4096)).toEqual({
      estimatedMb: 9000,
      chosenMb: 4096,
      cappedBy: 'index.max_maintenance_work_mem_mb (4096 MB)',
    })
    expect(sizeBuildMemory(900, 4096, 1000)).toMatchObject({
      chosenMb: 500,
      cappedBy: "half the server machine's free memory (1000 MB free)",
    })
  })
})

describe.each(targetKinds)('index on %s', (kind) => {
  let target: TestTarget
  let db: Database
  beforeAll(async () => {
    target = await createTarget(kind)
    db = await target.open()
    await initDemo(db, 600)
    // Some rows already embedded, so the index has a graph to build and queries have answers.
    await db.exec(
      `UPDATE atoms SET embedding = (SELECT array_agg(sin(atoms.id * g))::vector FROM generate_series(1, 1536) g) WHERE id % 2 = 0`,
    )
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  const run = async (plan = demoIndexPlan()) => {
    const result = await runInProcess(plan, db, registry)
    expect(result.status, JSON.stringify(result.session.state.batches.map((b) => b.error))).toBe('completed')
    return result.outputs.index as IndexOutput
  }
  const oidOf = async (name: string) => (await db.query<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [name])).rows[0]!.oid

  it('builds a valid HNSW index with the matching operator class on every target column, used by EXPLAIN', async () => {
    const o = await run()
    expect(o.indexes.map((i) => [i.table, i.name, i.action, i.valid, i.listed_in_pg_indexes, i.explain_index])).toEqual([
      ['public.atoms', 'atoms_embedding_hnsw', 'created', true, true, 'atoms_embedding_hnsw'],
      ['public.messages', 'messages_embedding_hnsw', 'created', true, true, 'messages_embedding_hnsw'],
      ['public.topics', 'topics_embedding_hnsw', 'created', true, true, 'topics_embedding_hnsw'],
    ])
    const atoms = o.indexes[0]!
    expect(atoms.definition).toMatch(/USING hnsw \(embedding vector_cosine_ops\) WITH \(m='16', ef_construction='64'\)/)
    expect(atoms.rows_indexed).toBe(180)
    expect(atoms.concurrently).toBe(kind === 'postgres')
    expect(atoms.maintenance_work_mem_mb).toBeGreaterThanOrEqual(64)
    expect(atoms.build_seconds).toBeGreaterThan(0)
    expect(atoms.query_ms_before).toBeGreaterThan(0)
  })

  it('builds without parallel workers on a pgvector with the parallel-build overflow, whatever the plan asks, and says why', async () => {
    await db.exec('DROP INDEX messages_embedding_hnsw')
    const version = (await db.query<{ v: string }>(`SELECT extversion AS v FROM pg_extension WHERE extname = 'vector'`)).rows[0]!.v
    const messages = (await run(demoIndexPlan({ parallel_workers: 2 }))).indexes.find((i) => i.table === 'public.messages')!
    if (versionBelow(version, '0.8.2')) {
      expect(messages).toMatchObject({ action: 'created', parallel_workers: 0 })
      expect(messages.parallel_note).toContain('CVE-2026-3172')
      expect(messages.parallel_note).toContain('index.parallel_workers: 2 not applied')
    } else {
      expect(messages).toMatchObject({ action: 'created', parallel_workers: 2, parallel_note: null })
    }
  })

  it('changes nothing on a second run', async () => {
    const before = await oidOf('atoms_embedding_hnsw')
    const o = await run()
    expect(o.indexes.map((i) => i.action)).toEqual(['kept', 'kept', 'kept'])
    expect(o.indexes.every((i) => i.build_seconds === null)).toBe(true)
    expect(await oidOf('atoms_embedding_hnsw')).toBe(before)
  })

  it('drops and rebuilds an invalid leftover', async () => {
    await db.exec(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'messages_embedding_hnsw'::regclass`)
    const before = await oidOf('messages_embedding_hnsw')
    const o = await run()
    const messages = o.indexes.find((i) => i.table === 'public.messages')!
    expect(messages).toMatchObject({
      action: 'rebuilt',
      valid: true,
      reason: 'invalid leftover messages_embedding_hnsw (a failed concurrent build) dropped and built again',
    })
    expect(await oidOf('messages_embedding_hnsw')).not.toBe(before)
  })

  it('builds the right index beside an L2 IVFFlat under a cosine plan, reports the old one, and drops it only when told', async () => {
    await db.exec(
      `DROP INDEX topics_embedding_hnsw; CREATE INDEX topics_ivf_l2 ON topics USING ivfflat (embedding vector_l2_ops) WITH (lists = 4)`,
    )
    const beside = (await run()).indexes.find((i) => i.table === 'public.topics')!
    // Search works at the end of the plan: the cosine HNSW index exists, is valid and serves the query.
    expect(beside).toMatchObject({ action: 'created', name: 'topics_embedding_hnsw', valid: true, explain_index: 'topics_embedding_hnsw' })
    expect(beside.reason).toContain('built beside topics_ivf_l2 (ivfflat, vector_l2_ops)')
    expect(beside.left_beside).toEqual([
      { name: 'topics_ivf_l2', method: 'ivfflat', opclass: 'vector_l2_ops', valid: true, size_bytes: expect.any(Number), scans: 0 },
    ])
    expect(beside.left_beside[0]!.size_bytes).toBeGreaterThan(0)
    expect((await db.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'topics_ivf_l2'`)).rows).toHaveLength(1)

    const replaced = (await run(demoIndexPlan({ replace_mismatched: true }))).indexes.find((i) => i.table === 'public.topics')!
    expect(replaced).toMatchObject({ action: 'kept', name: 'topics_embedding_hnsw', valid: true, left_beside: [] })
    expect((await db.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'topics_ivf_l2'`)).rows).toEqual([])
  })

  it('indexes the half-precision cast, and queries through the same expression use it', async () => {
    // The full-precision index from before does not serve the cast: the half one is built beside it...
    const beside = (await run(demoIndexPlan({ precision: 'half' }))).indexes[0]!
    expect(beside).toMatchObject({ action: 'created', name: 'atoms_embedding_hnsw_half', explain_index: 'atoms_embedding_hnsw_half' })
    expect(beside.left_beside.map((i) => i.name)).toEqual(['atoms_embedding_hnsw'])
    // ...and the full one goes once the plan allows it.
    const o = await run(demoIndexPlan({ precision: 'half', replace_mismatched: true }))
    const atoms = o.indexes[0]!
    expect(atoms).toMatchObject({
      name: 'atoms_embedding_hnsw_half',
      action: 'kept',
      explain_index: 'atoms_embedding_hnsw_half',
      valid: true,
      left_beside: [],
    })
    expect(atoms.search).toEqual({
      expression: '("embedding"::halfvec(1536))',
      cast_type: 'halfvec(1536)',
      operator: '<=>',
      opclass: 'halfvec_cosine_ops',
      query: '$1::halfvec(1536)',
    })
    expect(atoms.definition).toMatch(/hnsw \(\(\(embedding\)::halfvec\(1536\)\) halfvec_cosine_ops\)/)
    expect((await db.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'atoms_embedding_hnsw'`)).rows).toEqual([])
  })

  it('indexes the binary quantization, and the re-ranking query is the one EXPLAIN shows using it', async () => {
    const o = await run(demoIndexPlan({ precision: 'binary', replace_mismatched: true }))
    const atoms = o.indexes[0]!
    expect(atoms).toMatchObject({ name: 'atoms_embedding_hnsw_binary', valid: true, explain_index: 'atoms_embedding_hnsw_binary' })
    expect(atoms.definition).toMatch(/hnsw \(\(\(?binary_quantize\(embedding\)\)?::bit\(1536\)\) bit_hamming_ops\)/)
    expect(atoms.search).toMatchObject({
      opclass: 'bit_hamming_ops',
      operator: '<~>',
      rerank: { operator: '<=>', cast_type: 'vector(1536)', factor: 10 },
    })
    // The application's query as the runner builds it: candidates from the binary index, re-ranked by the full vector.
    const [target] = await resolveTargets(db, planSchema.parse(demoIndexPlan({ precision: 'binary' })))
    const sql = target!.nearestSql(target!.search('binary', 10))
    const query = (await db.query<{ v: string }>('SELECT embedding::text AS v FROM atoms WHERE embedding IS NOT NULL ORDER BY id LIMIT 1'))
      .rows[0]!.v
    const explained = await explainQuery(
      db,
      sql,
      [query, 10],
      { table: 'public.atoms', column: 'embedding', relation: target!.table },
      { forceIndex: true },
    )
    expect(explained.index_name).toBe('atoms_embedding_hnsw_binary')
    expect(explained.plan).toMatch(/<~> '[01]{16}… 1536 bits'::bit\(1536\)/) // the quantized query vector, elided like a vector
    expect(explained.plan, explained.plan).toMatch(/Sort Key: \(+c\.embedding <=> /)
    const { rows } = await db.query<{ key: string; distance: number }>(sql, [query, 10])
    expect(rows).toHaveLength(10)
    const distances = rows.map((r) => r.distance)
    expect(distances).toEqual([...distances].sort((a, b) => a - b))
    const exact = await db.query<{ d: number }>('SELECT (embedding <=> $1::vector)::float8 AS d FROM atoms WHERE id = $2', [
      query,
      rows[3]!.key,
    ])
    expect(rows[3]!.distance).toBeCloseTo(exact.rows[0]!.d, 6) // the full vector's distance, not the Hamming one
  })
})
