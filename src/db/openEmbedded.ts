import { makeOwnDir } from '../ownDirs.ts'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { PGlite, type Transaction } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { acquireProcessLock } from '../processLock.ts'
import { readEmbeddedTemplate } from './embeddedTemplate.ts'
import { vectorArrayLiteral } from './vectorBinary.ts'
import type { Database, Queryable, QueryResult } from './database.ts'

// The embedded PostgreSQL (PGlite: PostgreSQL compiled to WASM, with pgvector). Its data lives
// in a folder so that a session can be resumed against it. It is one backend session: fine for
// the newcomer's demo and for logic tests, not for concurrency or performance claims.
// One process opens a folder at a time: PGlite takes no lock of its own, and a second process
// opening the folder (a `resume` refused a moment later, a worker beside a `start`) corrupts
// it for good once either is killed. `<folder>.lock` plays the part of postmaster.pid.

/**
 * PGlite's shared_buffers (128MB by default) are resident from the start: 32MB holds the demo's
 * working set and takes about 120 MB off the first run's peak (bench/firstRun.ts). Set on the
 * command line of the embedded postgres, not written into the folder.
 */
export const EMBEDDED_SHARED_BUFFERS = '32MB'

function wrap(db: PGlite | Transaction): Queryable {
  return {
    async query<Row>(sql: string, params?: unknown[]): Promise<QueryResult<Row>> {
      const result = await db.query<Row>(sql, params)
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length }
    },
    async exec(sql: string) {
      await db.exec(sql)
    },
  }
}

export async function openEmbedded(dataDir: string): Promise<Database> {
  makeOwnDir(dataDir)
  const release = acquireProcessLock(
    `${resolve(dataDir)}.lock`,
    (pid) => `the embedded database in ${dataDir} is open in another runner process (pid ${pid}); wait for it to finish or stop it`,
  )
  let db: PGlite
  try {
    // A new folder starts from the build's template, where there is one (embeddedTemplate.ts).
    const loadDataDir = existsSync(join(dataDir, 'PG_VERSION')) ? undefined : readEmbeddedTemplate()
    db = await PGlite.create(dataDir, {
      extensions: { vector },
      loadDataDir,
      startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`],
    })
  } catch (error) {
    release()
    throw error
  }
  return {
    kind: 'embedded',
    description: `embedded PostgreSQL (PGlite) in ${dataDir}`,
    fingerprint: `embedded:${resolve(dataDir)}`,
    ...wrap(db),
    transaction(work, options = {}) {
      return db.transaction(async (tx) => {
        if (options.readOnly) await tx.exec('SET TRANSACTION READ ONLY')
        return work(wrap(tx))
      })
    },
    async withSession(work) {
      // The embedded database is one backend session already.
      try {
        return await work(wrap(db))
      } finally {
        await db.exec('RESET ALL')
      }
    },
    vectorArray: async (vectors) => vectorArrayLiteral(vectors),
    async listen(channel, onNotify) {
      // One process, one backend: the connection cannot be lost apart from the database itself.
      const unlisten = await db.listen(channel, onNotify)
      return { connected: () => true, close: async () => unlisten() }
    },
    async close() {
      try {
        await db.close()
      } finally {
        release()
      }
    },
  }
}
