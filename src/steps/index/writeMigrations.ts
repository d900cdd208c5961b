import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pythonString as python } from '../../appSource/python.ts'
import { UsageError } from '../../errors.ts'

// The migration the application keeps: plain SQL up/down, and an Alembic revision whose
// down_revision is the versions folder's current head. Up is exactly the statements the index
// batch runs, in its order, drops of leftovers and replaced indexes included, so applied to
// another copy of the same database (staging, production) it ends where the batch ended. The
// revision id is derived from the statements, so a re-run finds its own file instead of
// writing a second one.

/** One statement of the index batch; a CREATE INDEX that builds a graph carries the memory it is built with. */
export interface IndexSql {
  sql: string
  build?: {
    table: string
    maintenanceWorkMemMb: number
    /** The index it creates, qualified and quoted. */
    index: string
  }
}

export interface IndexMigration {
  up: IndexSql[]
  /** Undoes up, newest first: the built indexes dropped, the dropped ones created again from their definitions. */
  down: string[]
}

const withMemory = (s: IndexSql) => (s.build ? [`SET maintenance_work_mem = '${s.build.maintenanceWorkMemMb}MB'`, s.sql] : [s.sql])

export function migrationSql(migration: IndexMigration): { up: string; down: string } {
  const up = [
    '-- HNSW indexes for semantic search, written by runner: the statements its index batch ran, in order.',
    '-- CREATE INDEX CONCURRENTLY cannot run inside a transaction block: run this file as it is, not in BEGIN/COMMIT.',
    ...migration.up.flatMap(withMemory).map((sql) => `${sql};`),
    'RESET maintenance_work_mem;',
    '',
  ].join('\n')
  const down = ['-- Undoes the matching up migration.', ...migration.down.map((sql) => `${sql};`), ''].join('\n')
  return { up, down }
}

/** Revisions in an Alembic versions folder, and the one head that nothing revises. */
export function alembicHead(versionsDir: string): string | null {
  if (!existsSync(versionsDir)) throw new UsageError(`target.alembic.versions_dir: ${versionsDir} does not exist`)
  const revisions = new Set<string>()
  const revised = new Set<string>()
  for (const file of readdirSync(versionsDir).filter((f) => f.endsWith('.py'))) {
    const text = readFileSync(join(versionsDir, file), 'utf8')
    const revision = /^revision\s*(?::[^=]+)?=\s*['"]([^'"]+)['"]/m.exec(text)?.[1]
    if (!revision) continue
    revisions.add(revision)
    const down = /^down_revision\s*(?::[^=]+)?=\s*(.+)$/m.exec(text)?.[1] ?? ''
    for (const m of down.matchAll(/['"]([^'"]+)['"]/g)) revised.add(m[1]!)
  }
  const heads = [...revisions].filter((r) => !revised.has(r))
  if (heads.length > 1)
    throw new UsageError(
      `target.alembic.versions_dir: ${versionsDir} has several heads (${heads.join(', ')}); merge them first (alembic merge heads)`,
    )
  return heads[0] ?? null
}

export function alembicRevisionId(migration: IndexMigration): string {
  return createHash('sha256')
    .update(migration.up.map((s) => s.sql).join('\n'))
    .digest('hex')
    .slice(0, 12)
}

export function alembicRevision(migration: IndexMigration, revision: string, downRevision: string | null, createdAt: string): string {
  return `"""runner: HNSW indexes for semantic search

Revision ID: ${revision}
Revises: ${downRevision ?? ''}
Create Date: ${createdAt}
"""
from alembic import op

revision = "${revision}"
down_revision = ${downRevision ? `"${downRevision}"` : 'None'}
branch_labels = None
depends_on = None


def upgrade():
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction; the graph must fit in
    # maintenance_work_mem or the build is several times slower.
    with op.get_context().autocommit_block():
${migration.up
  .flatMap(withMemory)
  .map((sql) => `        op.execute(${python(sql)})`)
  .join('\n')}
        op.execute("RESET maintenance_work_mem")


def downgrade():
    with op.get_context().autocommit_block():
${migration.down.map((sql) => `        op.execute(${python(sql)})`).join('\n') || '        pass'}
`
}

/**
 * Writes a revision of the runner's into versionsDir on the current head, unless a file there
 * already holds it (its id comes from its content: a re-run finds its own); returns its path.
 */
export function writeRevisionOnce(
  versionsDir: string,
  revision: string,
  fileSuffix: string,
  render: (ids: { revision: string; downRevision: string | null; createdAt: string }) => string,
  log: (m: string) => void,
): string {
  const existing = findRevisionFile(versionsDir, revision)
  const path = join(versionsDir, existing ?? `${revision}_${fileSuffix}.py`)
  if (!existing) {
    mkdirSync(versionsDir, { recursive: true })
    writeFileSync(path, render({ revision, downRevision: alembicHead(versionsDir), createdAt: new Date().toISOString() }))
    log(`  wrote Alembic revision ${path}`)
  }
  return path
}

/** The file in versionsDir that already holds this revision, if any. */
export function findRevisionFile(versionsDir: string, revision: string): string | undefined {
  return readdirSync(versionsDir).find(
    (f) => f.endsWith('.py') && new RegExp(`^revision\\s*=\\s*['"]${revision}['"]`, 'm').test(readFileSync(join(versionsDir, f), 'utf8')),
  )
}
