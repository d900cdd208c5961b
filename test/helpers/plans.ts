import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'

/** A small valid plan as an object, for tests to write out or break. */
export function testPlan(overrides: { embeddedPath?: string; urlEnv?: string } = {}) {
  return {
    id: 'test-feature',
    title: 'Test feature',
    target: {
      database_url_env: overrides.urlEnv ?? 'TEST_TARGET_URL',
      embedded: { path: overrides.embeddedPath ?? '.runner/test-embedded', demo_rows: 10 },
      tables: [{ table: 'items', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }],
    },
    embedding: { provider: 'local', model: 'local', dimensions: 3 },
    batches: [
      { id: 'first', title: 'First', agent: 'vector-search-engineer', step: 'diagnose', guards: { read_only: false } },
      { id: 'second', title: 'Second', agent: 'database-reliability-engineer', step: 'index', depends_on: ['first'] },
      { id: 'third', title: 'Third', agent: 'pytest-test-master', step: 'validate', depends_on: ['second'] },
    ],
  }
}

export function writePlan(dir: string, plan: unknown, name = 'plan.yaml'): string {
  const path = join(dir, name)
  writeFileSync(path, typeof plan === 'string' ? plan : stringify(plan))
  return path
}

const AGENTS = {
  diagnose: 'vector-search-engineer',
  index: 'database-reliability-engineer',
  pipeline: 'fastapi-backend-expert',
  backfill: 'vector-search-engineer',
  validate: 'pytest-test-master',
} as const
type StepName = keyof typeof AGENTS

/** Batches of these steps, each depending on the one before, with the guards the shipped plan gives them. */
export function chainedBatches(...steps: StepName[]) {
  return steps.map((step, i) => ({
    id: step,
    title: step,
    agent: AGENTS[step],
    step,
    depends_on: i === 0 ? [] : [steps[i - 1]!],
    ...(step === 'diagnose' ? { guards: { read_only: true, writes_embeddings: false } } : {}),
    ...(step === 'index' ? { guards: { writes_embeddings: false } } : {}),
  }))
}
