import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { connectPostgres } from '../../src/db/connectPostgres.ts'
import type { Database } from '../../src/db/database.ts'
import { openEmbedded } from '../../src/db/openEmbedded.ts'

// Every test file works in a database of its own, created for it and dropped afterwards:
// a fresh folder for the embedded database, a fresh database on the real server when
// TEST_DATABASE_URL is set. Under CI (RUNNER_REQUIRE_SERVER_TESTS=1) a missing server is an
// error, never a silent skip.

export const serverUrl = process.env.TEST_DATABASE_URL
if (process.env.RUNNER_REQUIRE_SERVER_TESTS === '1' && !serverUrl) {
  throw new Error('RUNNER_REQUIRE_SERVER_TESTS=1 but TEST_DATABASE_URL is not set: the real-server tests would be skipped')
}

export interface TestTarget {
  kind: 'embedded' | 'postgres'
  /** A postgres:// URL for the server; undefined for the embedded database. */
  url?: string
  /** The embedded database's folder; undefined for the server. */
  path?: string
  open(): Promise<Database>
  drop(): Promise<void>
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

export async function createServerDatabase(): Promise<TestTarget> {
  if (!serverUrl) throw new Error('TEST_DATABASE_URL is not set')
  const name = `runner_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  const admin = new pg.Client({ connectionString: serverUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  const url = withDatabase(serverUrl, name)
  return {
    kind: 'postgres',
    url,
    open: () => connectPostgres(url),
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl })
      await client.connect()
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
      await client.end()
    },
  }
}

export function createEmbeddedDatabase(): TestTarget {
  const path = mkdtempSync(join(tmpdir(), 'runner-embedded-'))
  return {
    kind: 'embedded',
    path,
    open: () => openEmbedded(path),
    async drop() {
      rmSync(path, { recursive: true, force: true })
    },
  }
}

/** The kinds of database the suite runs against here: embedded always, the server when configured. */
export const targetKinds: ('embedded' | 'postgres')[] = serverUrl ? ['embedded', 'postgres'] : ['embedded']

export function createTarget(kind: 'embedded' | 'postgres'): Promise<TestTarget> {
  return kind === 'embedded' ? Promise.resolve(createEmbeddedDatabase()) : createServerDatabase()
}

export function tempDir(prefix = 'runner-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}
