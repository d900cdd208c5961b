import { describe, expect, it } from 'vitest'
import type { VectorIndex } from '../src/db/catalog/vocabulary.ts'
import { fitIdentifier } from '../src/db/quote.ts'
import { planRequests } from '../src/embeddings/planRequests.ts'
import { RateBudget } from '../src/embeddings/rateBudget.ts'
import { isTransient, TargetError } from '../src/errors.ts'
import { applySessionOptions } from '../src/coordinator/applySessionOptions.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { backoffMs } from '../src/retryTransient.ts'
import { describeStages } from '../src/steps/backfill/backfillStep.ts'
import { findFindings } from '../src/steps/diagnose/findFindings.ts'
import type { DiagnoseOutput } from '../src/steps/diagnose/output.ts'
import { chooseIndexAction } from '../src/steps/index/chooseIndexAction.ts'
import { chooseParallelWorkers } from '../src/steps/index/chooseParallelWorkers.ts'
import { recommendBuildMemory, sizeBuildMemory } from '../src/steps/index/sizeBuildMemory.ts'
import { recommendSetting, type SweepPoint, sweepSettled } from '../src/steps/validate/recommendSetting.ts'
import { judgeCriteria } from '../src/steps/validate/judgeCriteria.ts'
import { adviseMemory } from '../src/steps/validate/measureMemory.ts'
import type { QueryMeasurement, TableValidation } from '../src/steps/validate/output.ts'

// The runner's pure rules, each against a table of cases: what decides an index action, a
// finding, a criterion, a request split, a retry. No database: these are functions of data.

const { plan } = loadPlan('plans/feature-1.yaml')

function index(overrides: Partial<VectorIndex>): VectorIndex {
  return {
    schema: 'public',
    table: 'atoms',
    column: 'embedding',
    name: 'atoms_embedding_hnsw',
    method: 'hnsw',
    opclass: 'vector_cosine_ops',
    options: {},
    size_bytes: 8192,
    valid: true,
    definition: 'CREATE INDEX atoms_embedding_hnsw ON public.atoms USING hnsw (embedding vector_cosine_ops)',
    ...overrides,
  }
}

describe('chooseIndexAction', () => {
  const wanted = { opclass: 'vector_cosine_ops', expression: '"embedding"', name: 'atoms_embedding_hnsw' }
  const l2 = index({ name: 'atoms_l2', opclass: 'vector_l2_ops', definition: 'USING hnsw (embedding vector_l2_ops)' })
  const ivfflat = index({ name: 'atoms_ivf', method: 'ivfflat', definition: 'USING ivfflat (embedding vector_cosine_ops)' })
  const halfvec = index({
    name: 'atoms_half',
    definition: 'USING hnsw (((embedding)::halfvec(1536)) halfvec_cosine_ops)',
    opclass: 'halfvec_cosine_ops',
  })
  const ownLeftover = index({ valid: false })
  const othersInvalid = index({ name: 'their_failed_build', valid: false })
  type Case = [string, VectorIndex[], { replaceMismatched: boolean; partitioned: boolean }, string, string[], string[], string[]]
  const plain = { replaceMismatched: false, partitioned: false }
  const replace = { replaceMismatched: true, partitioned: false }
  // name, existing, options, action, dropped before, dropped after, left beside
  const cases: Case[] = [
    ['nothing there', [], plain, 'created', [], [], []],
    ['a matching valid index under another name', [index({ name: 'my_own' })], plain, 'kept', [], [], []],
    ["the runner's own invalid leftover", [ownLeftover], plain, 'rebuilt', ['atoms_embedding_hnsw'], [], []],
    ["someone else's invalid index: built beside, not dropped", [othersInvalid], plain, 'created', [], [], ['their_failed_build']],
    ["someone else's invalid index, replacement allowed", [othersInvalid], replace, 'replaced', [], ['their_failed_build'], []],
    ['an L2 index: the right one built beside it', [l2], plain, 'created', [], [], ['atoms_l2']],
    ['an L2 index, replacement allowed', [l2], replace, 'replaced', [], ['atoms_l2'], []],
    ['an ivfflat index of the right distance', [ivfflat], plain, 'created', [], [], ['atoms_ivf']],
    ['a halfvec expression index when full precision is wanted', [halfvec], plain, 'created', [], [], ['atoms_half']],
    ['a matching index beside an L2 one', [index({ name: 'my_own' }), l2], plain, 'kept', [], [], ['atoms_l2']],
    [
      'a partitioned table: its matching index not yet attached everywhere is completed',
      [ownLeftover],
      { replaceMismatched: false, partitioned: true },
      'completed',
      [],
      [],
      [],
    ],
    [
      "an invalid index under the runner's name with another definition is somebody else's: left beside, never dropped",
      [index({ valid: false, opclass: 'vector_l2_ops', definition: 'USING hnsw (embedding vector_l2_ops)' })],
      { replaceMismatched: false, partitioned: true },
      'created',
      [],
      [],
      ['atoms_embedding_hnsw'],
    ],
    [
      "a valid index of the application's under the runner's name, for another distance: left beside (the index batch builds under another name)",
      [index({ opclass: 'vector_l2_ops', definition: 'USING hnsw (embedding vector_l2_ops)' })],
      { replaceMismatched: false, partitioned: false },
      'created',
      [],
      [],
      ['atoms_embedding_hnsw'],
    ],
  ]
  it.each(cases)('%s', (_name, existing, options, action, before, after, beside) => {
    const decision = chooseIndexAction(existing, wanted, options)
    const names = (indexes: VectorIndex[]) => indexes.map((i) => i.name)
    expect([decision.action, names(decision.dropBefore), names(decision.dropAfter), names(decision.beside)]).toEqual([
      action,
      before,
      after,
      beside,
    ])
  })
})

function measured(
  overrides: {
    rows?: number
    nulls?: number
    indexes?: VectorIndex[]
    scan?: 'index' | 'sequential'
    dims?: number
    triggers?: number
    workers?: number
    origin?: DiagnoseOutput['targets'][number]['origin']
    side_effects?: DiagnoseOutput['side_effects']
    application?: Partial<Pick<DiagnoseOutput['targets'][number], 'no_text' | 'row_security' | 'materialized_views'>>
  } = {},
): Omit<DiagnoseOutput, 'findings' | 'root_cause' | 'memory'> {
  const rows = overrides.rows ?? 100_000
  return {
    database: { kind: 'postgres', server_version: '15' },
    extension: { installed_version: '0.8.4', available_version: '0.8.4' },
    vector_columns: [],
    targets: [
      {
        schema: 'public',
        table: 'atoms',
        key: 'id',
        column: 'embedding',
        text_columns: ['content'],
        distance: 'cosine',
        type: 'vector',
        dimensions: overrides.dims ?? 1536,
        rows,
        nulls: overrides.nulls ?? rows,
        origin: overrides.origin ?? null,
        partitions: [],
        no_text: overrides.application?.no_text ?? 0,
        writer_roles: [],
        row_security: overrides.application?.row_security ?? null,
        materialized_views: overrides.application?.materialized_views ?? [],
        stored_dimensions: null,
      },
    ],
    side_effects: overrides.side_effects ?? { can_suppress_triggers: true, triggers: [] },
    indexes: overrides.indexes ?? [],
    writers: {
      triggers: Array.from({ length: overrides.triggers ?? 0 }, (_, i) => ({ table: 'public.atoms', name: `t${i}`, definition: '' })),
      queue: null,
      workers_connected: overrides.workers ?? 0,
    },
    query_plans: [
      {
        table: 'public.atoms',
        column: 'embedding',
        sql: '',
        plan: '',
        scan: overrides.scan ?? 'sequential',
        index_name: null,
        execution_ms: 700,
      },
    ],
    app_queries: [],
    privileges: {
      role: 'app',
      can_create_runner_schema: true,
      tables: [{ table: 'public.atoms', owner: true, select: true, update: true, trigger: true }],
    },
    source_references: [],
  }
}

describe('findFindings', () => {
  const codes = (m: ReturnType<typeof measured>) =>
    findFindings({ ...plan, target: { ...plan.target, tables: [plan.target.tables[0]!] } }, m)
      .findings.map((f) => f.code)
      .sort()
  const cases: [string, ReturnType<typeof measured>, string[]][] = [
    [
      'the seed: all NULL, no index, nothing writes, sequential scan',
      measured(),
      ['NO_EMBEDDING_WRITER', 'NO_VECTOR_INDEX', 'NULL_EMBEDDINGS', 'SEQUENTIAL_SCAN'],
    ],
    ['fixed: embedded, indexed, a writer, index scan', measured({ nulls: 0, indexes: [index({})], scan: 'index', triggers: 1 }), []],
    [
      'row-level security hides rows from the runner; a materialized view copies the column; rows with no text',
      measured({
        nulls: 0,
        indexes: [index({})],
        scan: 'index',
        triggers: 1,
        application: {
          no_text: 88,
          row_security: { enabled: true, forced: true, policies: ['live_only'], hidden_from_runner: ['public.atoms'] },
          materialized_views: [{ view: 'public.atom_vectors', refresh: 'REFRESH MATERIALIZED VIEW public.atom_vectors' }],
        },
      }),
      ['MATERIALIZED_VIEW_COPIES', 'ROWS_WITHOUT_TEXT', 'ROW_SECURITY_HIDES_ROWS'],
    ],
    [
      'row-level security the runner sees through (owner, not forced) is no finding',
      measured({
        nulls: 0,
        indexes: [index({})],
        scan: 'index',
        triggers: 1,
        application: { row_security: { enabled: true, forced: false, policies: ['live_only'], hidden_from_runner: [] } },
      }),
      [],
    ],
    [
      'an invalid index',
      measured({ nulls: 0, indexes: [index({ valid: false })], scan: 'sequential', triggers: 1 }),
      ['INVALID_INDEX', 'SEQUENTIAL_SCAN'],
    ],
    [
      'the wrong operator class',
      measured({ nulls: 0, indexes: [index({ opclass: 'vector_l2_ops' })], triggers: 1 }),
      ['NO_VECTOR_INDEX', 'OPCLASS_MISMATCH', 'SEQUENTIAL_SCAN'],
    ],
    [
      'a dimension mismatch above what HNSW indexes',
      measured({ nulls: 0, dims: 3072, triggers: 1 }),
      ['DIMENSIONS_NOT_INDEXABLE', 'DIMENSION_MISMATCH', 'NO_VECTOR_INDEX', 'SEQUENTIAL_SCAN'],
    ],
    ['a small indexed table the planner rightly scans', measured({ rows: 500, nulls: 0, indexes: [index({})], triggers: 1 }), []],
    ['half embedded, a worker running', measured({ nulls: 10, indexes: [index({})], scan: 'index', workers: 1 }), ['NULL_EMBEDDINGS']],
    [
      'vectors of unknown origin in a filled column',
      measured({
        nulls: 0,
        indexes: [index({})],
        scan: 'index',
        triggers: 1,
        origin: { model: 'm', embedded: 100, this_model: 90, other_model: 0, unknown: 10, stale: 0 },
      }),
      ['FOREIGN_EMBEDDINGS'],
    ],
    [
      'every vector made by the model',
      measured({
        nulls: 0,
        indexes: [index({})],
        scan: 'index',
        triggers: 1,
        origin: { model: 'm', embedded: 100, this_model: 100, other_model: 0, unknown: 0, stale: 0 },
      }),
      [],
    ],
    [
      'an audit trigger that would fire on embedding writes',
      measured({
        nulls: 0,
        indexes: [index({})],
        scan: 'index',
        triggers: 1,
        side_effects: {
          can_suppress_triggers: false,
          triggers: [
            {
              table: 'public.atoms',
              name: 'audit',
              enabled: 'O',
              function: 'public.audit()',
              language: 'plpgsql',
              source: '',
              definition: '',
            },
          ],
        },
      }),
      ['APPLICATION_TRIGGERS'],
    ],
  ]
  it.each(cases)('%s', (_name, m, expected) => {
    expect(codes(m)).toEqual([...expected].sort())
  })

  it('never calls a sequential scan an index scan: no two lines of one diagnosis contradict each other', () => {
    const root = (m: ReturnType<typeof measured>) =>
      findFindings({ ...plan, target: { ...plan.target, tables: [plan.target.tables[0]!] } }, m).root_cause
    const small = measured({ rows: 500, nulls: 0, indexes: [index({})], scan: 'sequential', triggers: 1 })
    expect(root(small)).toContain('but for public.atoms (sequential scan on a small table, usable index)')
    const large = measured({ nulls: 0, indexes: [index({})], scan: 'sequential', triggers: 1 })
    expect(root(large)).toContain('the planner prefers a sequential scan to the index at these settings')
    expect(root(large)).not.toContain('No problem found')
  })

  it('says an application trigger is an error only where the runner cannot keep it quiet', () => {
    const audit = {
      table: 'public.atoms',
      name: 'audit',
      enabled: 'O',
      function: 'public.audit()',
      language: 'plpgsql',
      source: '',
      definition: '',
    }
    const severity = (can: boolean, enabled: string) =>
      findFindings(plan, measured({ side_effects: { can_suppress_triggers: can, triggers: [{ ...audit, enabled }] } })).findings.find(
        (f) => f.code === 'APPLICATION_TRIGGERS',
      )?.severity
    expect([severity(true, 'O'), severity(false, 'O'), severity(true, 'A')]).toEqual(['info', 'error', 'error'])
  })

  it('tells half-filled columns from empty ones by severity', () => {
    const half = findFindings(plan, measured({ nulls: 10 })).findings.find((f) => f.code === 'NULL_EMBEDDINGS')
    const empty = findFindings(plan, measured()).findings.find((f) => f.code === 'NULL_EMBEDDINGS')
    expect([half?.severity, empty?.severity]).toEqual(['warning', 'error'])
  })
})

function run(p95: number, ef = 40): QueryMeasurement['at_default'] {
  return {
    setting: { ef_search: ef, iterative_scan: 'off' },
    scan: 'index',
    index_name: 'atoms_embedding_hnsw',
    p50: p95 / 2,
    p95,
    p99: p95 * 1.2,
    rounds_p95: [p95, p95],
    recall: 0.97,
  }
}

function measurement(overrides: Partial<QueryMeasurement> = {}): QueryMeasurement {
  const atDefault = run(2)
  return {
    name: 'nearest-10',
    sql: 'SELECT ...',
    limit: 10,
    queries: 100,
    exact_queries: 20,
    rounds: 2,
    index_usable: true,
    exact: { p50: 100, p95: 110, p99: 120 },
    sweep: [],
    recommended: atDefault.setting,
    recall_target_reached: true,
    why: '',
    measured_as: null,
    at_default: atDefault,
    at_recommended: atDefault,
    apply: [],
    ...overrides,
  }
}

function knownItems(recall: number, matched: number): TableValidation['known_items'] {
  return { queries: 30, k: 5, recall_at_k: recall, consistency: { sampled: 30, matched, min_cosine: matched === 30 ? 0.999 : 0.1 } }
}

function table(overrides: Partial<TableValidation> = {}): TableValidation {
  return {
    table: 'public.atoms',
    column: 'embedding',
    rows: 50_000,
    no_text: 0,
    known_items: null,
    partitions: [],
    nulls: 0,
    index: {
      name: 'atoms_embedding_hnsw',
      opclass: 'vector_cosine_ops',
      valid: true,
      size_bytes: 1,
      shared_buffers_bytes: 2,
      fits_shared_buffers: true,
      prewarmed: false,
    },
    buffers: null,
    explain: { scan: 'index', index_name: 'atoms_embedding_hnsw', forced_index_name: 'atoms_embedding_hnsw', execution_ms: 1 },
    latency: measurement(),
    app_queries: [],
    relevance: { queries: 10, k: 5, recall_at_k: 0.8, mrr: 0.7 },
    auto_embed: {
      measured: true,
      delay_ms: 30,
      reason: null,
      method: 'requeue',
      worker_running: true,
      deployed_worker: true,
      capture_roles: [],
      capture: { proved: true, detail: 'proved' },
    },
    ...overrides,
  }
}

describe('judgeCriteria', () => {
  const failed = (tables: TableValidation[]) =>
    judgeCriteria(plan, tables, 'postgres')
      .filter((c) => !c.passed)
      .map((c) => c.id)
  const cases: [string, TableValidation[], string[]][] = [
    ['every measurement within its threshold', [table()], []],
    ['a NULL left', [table({ nulls: 1 })], ['no_null_embeddings']],
    ['an invalid index', [table({ index: { ...table().index, valid: false } })], ['hnsw_index_on_every_column']],
    [
      'a sequential scan on a large table, as the application runs it',
      [
        table({
          explain: { scan: 'sequential', index_name: null, forced_index_name: 'atoms_embedding_hnsw', execution_ms: 80 },
          latency: measurement({ at_default: { ...run(30), scan: 'sequential', index_name: null } }),
        }),
      ],
      ['explain_uses_index'],
    ],
    [
      "a sequential scan at the application's settings, an index scan at the recommended one: not met until it is applied",
      [
        table({
          explain: { scan: 'sequential', index_name: null, forced_index_name: 'atoms_embedding_hnsw', execution_ms: 50 },
          latency: measurement({
            at_default: { ...run(50), scan: 'sequential', index_name: null },
            at_recommended: run(2, 64),
            apply: ['SET LOCAL hnsw.ef_search = 64'],
          }),
        }),
      ],
      ['explain_uses_index'],
    ],
    [
      'the same, once the plan says the application sets it (measured there)',
      [table({ latency: measurement({ at_default: run(2, 64), at_recommended: run(2, 64) }) })],
      [],
    ],
    [
      'a sequential scan at the recommended setting too, on a large table',
      [
        table({
          explain: { scan: 'sequential', index_name: null, forced_index_name: 'atoms_embedding_hnsw', execution_ms: 50 },
          latency: measurement({
            at_default: { ...run(50), scan: 'sequential', index_name: null },
            at_recommended: { ...run(45, 64), scan: 'sequential', index_name: null },
            apply: ['SET hnsw.ef_search = 64'],
          }),
        }),
      ],
      ['explain_uses_index'],
    ],
    [
      'a sequential scan on a small table whose index can serve',
      [table({ rows: 500, explain: { scan: 'sequential', index_name: null, forced_index_name: 'atoms_embedding_hnsw', execution_ms: 1 } })],
      [],
    ],
    ['p95 above 50 ms', [table({ latency: measurement({ at_default: run(51), at_recommended: run(51) }) })], ['latency_p95']],
    [
      "p95 within at the recommended setting, above at the application's: judged as the application runs it",
      [table({ latency: measurement({ at_default: run(120), at_recommended: run(4, 64), apply: ['SET LOCAL hnsw.ef_search = 64'] }) })],
      ['latency_p95'],
    ],
    [
      'no usable index: judged on what the application gets, the scan',
      [table({ latency: measurement({ index_usable: false, recommended: null, at_recommended: null, at_default: run(80) }) })],
      ['latency_p95'],
    ],
    [
      'an application query over the limit',
      [table({ app_queries: [measurement({ name: 'by topic', at_default: run(70) })] })],
      ['latency_p95'],
    ],
    ['latency not measured', [table({ latency: null })], ['latency_p95']],
    ['relevance below 0.5', [table({ relevance: { queries: 10, k: 5, recall_at_k: 0.4, mrr: 0.3 } })], ['relevance']],
    ['no labelled queries and no known items measured', [table({ relevance: null })], ['relevance']],
    ['no labelled queries: judged on known items', [table({ relevance: null, known_items: knownItems(0.8, 30) })], []],
    ['known items not found', [table({ relevance: null, known_items: knownItems(0.3, 30) })], ['relevance']],
    ["labelled queries pass, but the column holds another model's vectors", [table({ known_items: knownItems(0.9, 2) })], ['relevance']],
    [
      'a probe never embedded',
      [
        table({
          auto_embed: {
            measured: false,
            delay_ms: null,
            reason: 'not within 10 s',
            method: 'requeue',
            worker_running: true,
            deployed_worker: true,
            capture_roles: [],
            capture: { proved: true, detail: '' },
          },
        }),
      ],
      ['auto_embed'],
    ],
    [
      'a worker embeds, but the capture is not proved',
      [table({ auto_embed: { ...table().auto_embed!, capture: { proved: false, detail: 'disabled' } } })],
      ['auto_embed'],
    ],
    [
      "the capture refuses one of the application's roles",
      [
        table({
          auto_embed: {
            ...table().auto_embed!,
            capture_roles: [
              { table: 'public.atoms', role: 'app', proved: true, detail: '' },
              { table: 'public.atoms', role: 'reporter', proved: false, detail: 'permission denied for schema runner' },
            ],
          },
        }),
      ],
      ['auto_embed'],
    ],
    [
      'a role the runner may not SET ROLE to is said, not failed',
      [
        table({
          auto_embed: {
            ...table().auto_embed!,
            capture_roles: [{ table: 'public.atoms', role: 'app', proved: null, detail: 'not proved' }],
          },
        }),
      ],
      [],
    ],
    [
      'a probe row embedded (insert_row: no capture proof asked)',
      [table({ auto_embed: { ...table().auto_embed!, method: 'insert_row', capture: null } })],
      [],
    ],
  ]
  it.each(cases)('%s', (_name, tables, expected) => {
    expect(failed(tables)).toEqual(expected)
  })

  it('marks auto_embed as waiting for a worker, not failed, when the capture is proved and no worker runs', () => {
    const noWorker = { ...table().auto_embed!, measured: false, delay_ms: null, reason: 'no worker is running', worker_running: false }
    const pending = (t: TableValidation) => judgeCriteria(plan, [t], 'postgres').find((c) => c.id === 'auto_embed')!
    expect(pending(table({ auto_embed: noWorker }))).toMatchObject({
      passed: false,
      pending: expect.stringContaining('a worker to deploy'),
    })
    expect(pending(table({ auto_embed: { ...noWorker, capture: { proved: false, detail: 'disabled' } } })).pending).toBeUndefined()
    expect(pending(table({ auto_embed: { ...noWorker, worker_running: true } })).pending).toBeUndefined()
  })

  it('a worker started for the check alone proves the pipeline but is not one deployed: pending, not met', () => {
    const checkOnly = { ...table().auto_embed!, deployed_worker: false }
    const judged = judgeCriteria(plan, [table({ auto_embed: checkOnly })], 'postgres').find((c) => c.id === 'auto_embed')!
    expect(judged).toMatchObject({ passed: false, pending: expect.stringContaining('a worker to deploy') })
    expect(judged.measured).toContain('no `runner worker` is registered')
  })
})

describe('planRequests', () => {
  const cases: [string, number[], number, number, number[][]][] = [
    ['everything fits one request', [1, 2, 3], 2048, 300_000, [[0, 1, 2]]],
    ['split by input count', [1, 1, 1, 1, 1], 2, 300_000, [[0, 1], [2, 3], [4]]],
    ['split by tokens', [6, 6, 6], 2048, 12, [[0, 1], [2]]],
    ['an input over the token limit still goes alone', [20, 1], 2048, 12, [[0], [1]]],
    ['nothing to send', [], 2048, 300_000, []],
  ]
  it.each(cases)('%s', (_name, counts, maxInputs, maxTokens, expected) => {
    expect(planRequests(counts, maxInputs, maxTokens)).toEqual(expected)
  })
})

describe('RateBudget', () => {
  it('spends a full bucket at once, then waits for the tokens to refill', async () => {
    const budget = new RateBudget({ tokensPerMinute: 60_000 }) // 1,000 tokens a second
    const started = performance.now()
    await budget.acquire(60_000)
    expect(performance.now() - started).toBeLessThan(100)
    await budget.acquire(200) // ~200 ms of refill
    expect(performance.now() - started).toBeGreaterThanOrEqual(150)
  })

  it("takes the server's word: nothing left and a reset time pause every request", async () => {
    const budget = new RateBudget({ requestsPerMinute: 1_000_000 })
    budget.update(
      new Headers({ 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '250ms' }),
    )
    const started = performance.now()
    await budget.acquire(1)
    expect(performance.now() - started).toBeGreaterThanOrEqual(200)
  })
})

describe('errors and retries', () => {
  const cases: [string, unknown, boolean][] = [
    ['admin shutdown (57P01)', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), true],
    ['serialization failure (40001)', Object.assign(new Error('could not serialize access'), { code: '40001' }), true],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), true],
    ['pg: connection terminated', new Error('Connection terminated unexpectedly'), true],
    ['pg: a pooled connection the server closed', new Error('Client has encountered a connection error and is not queryable'), true],
    ['undefined column (42703)', Object.assign(new Error('column "x" does not exist'), { code: '42703' }), false],
    ['permission denied (42501)', Object.assign(new Error('permission denied for table atoms'), { code: '42501' }), false],
    ["one of the runner's own errors, whatever it says", new TargetError('Connection terminated is in this message'), false],
  ]
  it.each(cases)('%s: transient = %s', (_name, error, transient) => {
    expect(isTransient(error)).toBe(transient)
  })

  it('backs off exponentially, capped, between half and all of the window', () => {
    expect([0, 1, 2, 3, 10].map((retry) => backoffMs(retry, 1000, 16_000, () => 1))).toEqual([1000, 2000, 4000, 8000, 16_000])
    expect([0, 1, 2, 3, 10].map((retry) => backoffMs(retry, 1000, 16_000, () => 0))).toEqual([500, 1000, 2000, 4000, 8000])
  })
})

describe('names and options', () => {
  it('keeps two long names apart within 63 bytes', () => {
    const a = fitIdentifier(`enqueue_${'x'.repeat(60)}_a`)
    const b = fitIdentifier(`enqueue_${'x'.repeat(60)}_b`)
    expect(Buffer.byteLength(a)).toBeLessThanOrEqual(63)
    expect(a).not.toBe(b)
    expect(fitIdentifier('short_name')).toBe('short_name')
    expect(Buffer.byteLength(fitIdentifier('é'.repeat(40)))).toBeLessThanOrEqual(63)
  })

  it('applies the command line as plan settings, and only what was given', () => {
    expect(applySessionOptions(plan, {}).embedding.provider).toBe(plan.embedding.provider)
    expect(applySessionOptions(plan, { provider: 'local' }).embedding.provider).toBe('local')
    expect(applySessionOptions(plan, { with_worker: true }).validate.start_worker).toBe(true)
    expect(applySessionOptions(plan, {}).validate.start_worker).toBe(false)
  })
})

describe('recommendSetting', () => {
  const point = (
    ef: number,
    recall: number,
    scan: 'index' | 'sequential' = 'index',
    iterative: 'off' | 'relaxed_order' = 'off',
  ): SweepPoint => ({
    ef_search: ef,
    iterative_scan: iterative,
    recall,
    p50: 1,
    p95: 2,
    scan,
    index_name: scan === 'index' ? 'atoms_hnsw' : null,
    forced: false,
  })
  const goal = { indexName: 'atoms_hnsw', limit: 10, recallTarget: 0.95 }
  const cases: [string, SweepPoint[], { ef_search: number; iterative_scan: string } | null, boolean][] = [
    [
      'one step of margin above the smallest that meets the target',
      [point(10, 0.9), point(20, 0.96), point(40, 0.98), point(64, 0.99)],
      { ef_search: 40, iterative_scan: 'off' },
      true,
    ],
    [
      'never below the LIMIT, even when it meets the target',
      [point(5, 0.97), point(10, 0.97), point(20, 0.99)],
      { ef_search: 20, iterative_scan: 'off' },
      true,
    ],
    [
      'never a setting at which the planner leaves the index',
      [point(10, 1, 'sequential'), point(20, 0.96), point(40, 0.97)],
      { ef_search: 40, iterative_scan: 'off' },
      true,
    ],
    [
      'the largest candidate when only it meets the target',
      [point(10, 0.5), point(20, 0.96)],
      { ef_search: 20, iterative_scan: 'off' },
      true,
    ],
    [
      'the best when none meets the target',
      [point(10, 0.5), point(20, 0.7), point(40, 0.6)],
      { ef_search: 20, iterative_scan: 'off' },
      false,
    ],
    ['nothing when the planner never uses the index', [point(10, 1, 'sequential'), point(40, 1, 'sequential')], null, false],
    [
      'never a setting next to one where the planner leaves the index: it holds when statistics move',
      [point(10, 1, 'sequential'), point(20, 1, 'sequential'), point(40, 0.96), point(64, 0.98), point(100, 0.99)],
      { ef_search: 100, iterative_scan: 'off' },
      true,
    ],
    [
      'nothing when the index is kept at one setting alone',
      [point(10, 1, 'sequential'), point(40, 0.97), point(64, 1, 'sequential')],
      null,
      false,
    ],
    [
      'iterative scan when the plain scan is starved by a filter',
      [point(40, 0.2), point(100, 0.3), point(40, 0.99, 'index', 'relaxed_order'), point(100, 1, 'index', 'relaxed_order')],
      { ef_search: 100, iterative_scan: 'relaxed_order' },
      true,
    ],
  ]
  it.each(cases)('%s', (_name, points, setting, reached) => {
    const r = recommendSetting(points, goal)
    expect([r.setting, r.recall_target_reached]).toEqual([setting, reached])
  })

  it("keeps the application's own setting when it already holds, and moves it only when it does not", () => {
    const points = [point(10, 0.9), point(20, 0.96), point(40, 0.98), point(64, 0.99)]
    const kept = recommendSetting(points, goal, { ef_search: 40, iterative_scan: 'off' })
    expect(kept.setting).toEqual({ ef_search: 40, iterative_scan: 'off' })
    expect(kept.why).toContain('nothing to change')
    const moved = recommendSetting(points, goal, { ef_search: 10, iterative_scan: 'off' })
    expect(moved.setting).toEqual({ ef_search: 40, iterative_scan: 'off' })
  })

  it('stops the sweep once the candidates left cannot change the recommendation, and not before', () => {
    const left = [100, 200, 400]
    const at40 = { ef_search: 40, iterative_scan: 'off' as const }
    const upTo64 = [point(10, 0.9), point(20, 0.96), point(40, 0.98), point(64, 0.99)]
    // The application's own setting holds, judged with both its neighbours.
    expect(sweepSettled(upTo64, goal, at40, upTo64, left)).toBe(true)
    expect(sweepSettled(upTo64.slice(0, 3), goal, at40, upTo64.slice(0, 3), [64, ...left])).toBe(false)
    // A step of margin above the smallest to reach the target, the margin itself judged with its neighbour above.
    expect(sweepSettled(upTo64, goal, undefined, upTo64, left)).toBe(true)
    expect(sweepSettled(upTo64.slice(0, 3), goal, undefined, upTo64.slice(0, 3), [64, ...left])).toBe(false)
    // The planner leaving the index at the largest measured: the one below it is not eligible, so not settled.
    const leaves = [point(10, 0.9), point(20, 0.96), point(40, 0.98), point(64, 1, 'sequential')]
    expect(sweepSettled(leaves, goal, undefined, leaves, left)).toBe(false)
  })

  it('a sweep stopped when settled recommends what the whole sweep would, over 5,000 random sweeps', () => {
    const candidates = [10, 20, 40, 64, 100, 200, 400]
    let seed = 7
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    let stoppedEarly = 0
    for (let n = 0; n < 5000; n++) {
      const full = candidates.map((ef) => point(ef, Math.min(1, 0.8 + random() * 0.25), random() < 0.15 ? 'sequential' : 'index'))
      const current =
        random() < 0.5 ? { ef_search: candidates[Math.floor(random() * candidates.length)]!, iterative_scan: 'off' as const } : undefined
      let measured = full
      for (let i = 0; i < full.length; i++) {
        const prefix = full.slice(0, i + 1)
        if (sweepSettled(prefix, goal, current, prefix, candidates.slice(i + 1))) {
          measured = prefix
          break
        }
      }
      if (measured.length < full.length) stoppedEarly++
      const whole = recommendSetting(full, goal, current)
      const stopped = recommendSetting(measured, goal, current)
      expect([stopped.setting, stopped.recall_target_reached]).toEqual([whole.setting, whole.recall_target_reached])
    }
    expect(stoppedEarly).toBeGreaterThan(1000)
  })
})

describe('build settings', () => {
  it.each([
    ['0.8.0', 4, 0, true],
    ['0.7.4', undefined, 0, true],
    ['0.8.2', 4, 4, false],
    ['0.8.6', undefined, undefined, false],
    [null, 2, 2, false],
  ] as const)('pgvector %s, plan %s: %s parallel workers, refused for the CVE: %s', (version, planned, workers, refused) => {
    const choice = chooseParallelWorkers(version, planned)
    expect(choice.workers).toBe(workers)
    expect(choice.note !== null).toBe(refused)
    if (refused) expect(choice.note).toContain('CVE-2026-3172')
  })

  it.each([
    ['fits', sizeBuildMemory(500, 4096), 260, undefined],
    [
      'capped by the plan; half precision fits',
      sizeBuildMemory(6000, 4096),
      3200,
      'raise index.max_maintenance_work_mem_mb to 6000, or set index.precision: half (a graph of about 3200 MB, which fits)',
    ],
    [
      'capped by the plan; half precision does not fit either',
      sizeBuildMemory(9000, 4096),
      4700,
      'raise index.max_maintenance_work_mem_mb to 9000, or set index.precision: half (about 4700 MB)',
    ],
    [
      'capped by the machine, already half precision',
      sizeBuildMemory(3000, 4096, 2000),
      null,
      'give the server more free memory (about 3000 MB for the build)',
    ],
  ] as const)('memory: %s', (_name, memory, half, advice) => {
    const text = recommendBuildMemory(memory, half)
    if (advice === undefined) expect(text).toBeUndefined()
    else expect(text).toContain(advice)
  })
})

describe("describeStages (where the backfill's time went)", () => {
  it('says the provider set the pace when the loop waited on it more than on the database', () => {
    const line = describeStages({ reading: 0.5, embedding: 30, saving: 6, writing: 2 }, 40)!
    expect(line).toContain('waiting for the provider 30.0 s (75%)')
    expect(line).toContain('bookkeeping 1.5 s (4%)')
    expect(line).toContain('the provider set the pace')
  })
  it('says the database set the pace when saving, writing and reading together outweigh the provider', () => {
    expect(describeStages({ reading: 1, embedding: 10, saving: 4, writing: 6 }, 22)).toContain('the database set the pace')
  })
  it('says nothing for a backfill from before the stages were measured', () => {
    expect(describeStages(undefined, 12)).toBeNull()
  })
})

describe('adviseMemory (when memory, not the index, sets the latency)', () => {
  const GB = 1024 ** 3
  const settings = (shared: number, cache: number, machine: number | null = 24 * GB) => ({
    shared_buffers_bytes: shared,
    effective_cache_size_bytes: cache,
    machine_bytes: machine,
  })
  const pass = (read: number, p95: number) => ({ queries: 20, p50_ms: p95 / 2, p95_ms: p95, hit_blocks: 300 - read, read_blocks: read })

  it('recommends nothing when the indexes fit in shared_buffers and the planner is told they are cached', () => {
    expect(adviseMemory(settings(4 * GB, 16 * GB), 1 * GB, { first: pass(200, 9), warm: pass(0, 1) })).toEqual([])
  })

  it('recommends shared_buffers above the indexes, with the pages read from outside it as the figure it moves', () => {
    const [advice, ...rest] = adviseMemory(settings(128 * 1024 ** 2, 16 * GB), 3.9 * GB, { first: pass(280, 40), warm: pass(120, 18) })
    expect(rest).toEqual([])
    expect(advice).toMatch(/^shared_buffers \(128 MB\) is smaller than the vector indexes \(3\.9 GB\)/)
    expect(advice).toMatch(/shared_buffers = 4\.9 GB or more \(this machine has 24\.0 GB/)
    expect(advice).toMatch(
      /before any warm-up p95 40\.00 ms, 280 of 300 pages a query read from outside shared_buffers; warm p95 18\.00 ms, 120 of 300/,
    )
  })

  it('says when the indexes cannot stay in memory on the machine at all, and that the planner is told too little', () => {
    const advice = adviseMemory(settings(2 * GB, 4 * GB), 15 * GB)
    expect(advice).toHaveLength(3)
    expect(advice[0]).toMatch(/more than half of this machine's memory \(24\.0 GB\).*index\.precision: half/)
    expect(advice[2]).toMatch(/^effective_cache_size \(4\.0 GB\) tells the planner .*effective_cache_size = 18\.8 GB or more/)
  })

  it('reads no machine memory for a server on another host, and says nothing of it', () => {
    const advice = adviseMemory(settings(128 * 1024 ** 2, 4 * GB, null), 1 * GB)
    expect(advice).toHaveLength(1)
    expect(advice[0]).not.toMatch(/this machine/)
  })

  it('names other tables competing for shared_buffers when the indexes fit but warm searches still read', () => {
    expect(adviseMemory(settings(4 * GB, 16 * GB), 1 * GB, { first: pass(200, 9), warm: pass(40, 4) })[0]).toMatch(
      /other tables compete for it/,
    )
  })
})
