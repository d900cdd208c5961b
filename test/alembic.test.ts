import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { initDemo } from '../src/demo/initDemo.ts'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { diagnoseStep } from '../src/steps/diagnose/diagnoseStep.ts'
import { indexStep } from '../src/steps/index/indexStep.ts'
import type { IndexOutput } from '../src/steps/index/output.ts'
import { createTarget, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { testPlan } from './helpers/plans.ts'
import { runInProcess } from './helpers/runInProcess.ts'

// Real Alembic (Debian's package, installed by .ci/run) on the revision the index batch writes.

const registry = new Map<string, any>([
  ['diagnose', diagnoseStep],
  ['index', indexStep],
])
const shipped = loadPlan('plans/feature-1.yaml').plan

function alembicProject(dir: string) {
  mkdirSync(join(dir, 'migrations/versions'), { recursive: true })
  writeFileSync(join(dir, 'alembic.ini'), '[alembic]\nscript_location = migrations\n')
  writeFileSync(
    join(dir, 'migrations/env.py'),
    `import os
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["DATABASE_URL"].replace("postgres://", "postgresql+psycopg2://", 1))
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
`,
  )
  writeFileSync(
    join(dir, 'migrations/versions/0001_base.py'),
    `revision = "base0001"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n`,
  )
}

describe.skipIf(!serverUrl)('the index batch with Alembic (real server)', () => {
  let target: TestTarget
  let db: Database
  const dir = tempDir()
  const env = () => ({ DATABASE_URL: target.url! })
  const indexes = async () =>
    (await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw%' ORDER BY 1`)).rows.map(
      (r) => r.indexname,
    )

  beforeAll(async () => {
    target = await createTarget('postgres')
    db = await target.open()
    await initDemo(db, 200)
    alembicProject(dir)
    await execa('alembic', ['upgrade', 'head'], { cwd: dir, env: env() })
  })
  afterAll(async () => {
    await db?.close()
    await target?.drop()
  })

  it('writes a revision on the current head, applies it with alembic upgrade head, and downgrade removes the indexes', async () => {
    const saved = process.env.DATABASE_URL
    process.env.DATABASE_URL = target.url
    let output: IndexOutput
    try {
      const plan = {
        ...testPlan(),
        target: {
          tables: shipped.target.tables,
          alembic: { versions_dir: join(dir, 'migrations/versions'), apply: true, ini: join(dir, 'alembic.ini') },
        },
        embedding: { model: 'text-embedding-ada-002', dimensions: 1536 },
        batches: shipped.batches.slice(0, 2),
      }
      const result = await runInProcess(plan, db, registry)
      expect(result.status, JSON.stringify(result.session.state.batches.map((b) => b.error))).toBe('completed')
      output = result.outputs.index
    } finally {
      if (saved === undefined) delete process.env.DATABASE_URL
      else process.env.DATABASE_URL = saved
    }
    expect(output.migrations.applied_with).toBe('alembic')
    const revision = readFileSync(output.migrations.alembic_revision!, 'utf8')
    expect(revision).toMatch(/^down_revision = "base0001"$/m)
    expect(revision).toContain('CREATE INDEX CONCURRENTLY IF NOT EXISTS \\"atoms_embedding_hnsw\\"')
    expect(output.indexes.map((i) => [i.name, i.action, i.valid, i.build_seconds])).toEqual([
      ['atoms_embedding_hnsw', 'created', true, null],
      ['messages_embedding_hnsw', 'created', true, null],
      ['topics_embedding_hnsw', 'created', true, null],
    ])
    expect(await indexes()).toEqual(['atoms_embedding_hnsw', 'messages_embedding_hnsw', 'topics_embedding_hnsw'])

    const current = await execa('alembic', ['current'], { cwd: dir, env: env() })
    expect(current.stdout).toContain(`${revision.match(/^revision = "(\w+)"/m)![1]} (head)`)
    await execa('alembic', ['downgrade', 'base0001'], { cwd: dir, env: env() })
    expect(await indexes()).toEqual([])
    await execa('alembic', ['upgrade', 'head'], { cwd: dir, env: env() })
    expect(await indexes()).toEqual(['atoms_embedding_hnsw', 'messages_embedding_hnsw', 'topics_embedding_hnsw'])
  })

  it('ships SQL up/down files that psql runs as they are', async () => {
    const result = await runInProcess(
      {
        ...testPlan(),
        target: { tables: shipped.target.tables },
        embedding: { model: 'text-embedding-ada-002', dimensions: 1536 },
        batches: shipped.batches.slice(0, 2),
      },
      db,
      registry,
    )
    const output = result.outputs.index as IndexOutput
    expect(output.indexes.map((i) => i.action)).toEqual(['kept', 'kept', 'kept'])
    // Nothing to build, so the migration is empty; drop the indexes and write the pair again.
    await db.exec('DROP INDEX atoms_embedding_hnsw; DROP INDEX messages_embedding_hnsw; DROP INDEX topics_embedding_hnsw')
    const again = await runInProcess(
      {
        ...testPlan(),
        target: { tables: shipped.target.tables },
        embedding: { model: 'text-embedding-ada-002', dimensions: 1536 },
        batches: shipped.batches.slice(0, 2),
      },
      db,
      registry,
    )
    const files = (again.outputs.index as IndexOutput).migrations
    const psql = (file: string) => execa('psql', [target.url!, '-v', 'ON_ERROR_STOP=1', '-q', '-f', join(again.session.dir, file)])
    await psql(files.down_sql)
    expect(await indexes()).toEqual([])
    await psql(files.up_sql)
    expect(await indexes()).toEqual(['atoms_embedding_hnsw', 'messages_embedding_hnsw', 'topics_embedding_hnsw'])
  })
})
