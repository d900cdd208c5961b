// The one database interface every step uses. Two implementations: a pg pool for any
// postgres:// URL (connectPostgres.ts) and the embedded PGlite database (openEmbedded.ts).

import type { Vector } from '../embeddings/provider.ts'

export interface QueryResult<Row> {
  rows: Row[]
  rowCount: number
}

export interface Queryable {
  /** One statement; values are always $n parameters. */
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<Row>>
  /** A script of several statements without parameters (DDL). */
  exec(sql: string): Promise<void>
}

export interface TransactionOptions {
  readOnly?: boolean
}

export interface Database extends Queryable {
  readonly kind: 'postgres' | 'embedded'
  /** Where it points, safe to print and store: never contains a password. */
  readonly description: string
  /** Which database this is, exactly: user@host:port/database, or the embedded folder. Compared, never shown redacted. */
  readonly fingerprint: string
  transaction<T>(work: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T>
  /** Vectors as one parameter for `$n::vector[]`: binary to the server (vectorBinary.ts), text to the embedded database. */
  vectorArray(vectors: Vector[]): Promise<unknown>
  /**
   * One connection for the duration of work, outside any transaction: for session settings
   * (SET maintenance_work_mem) and statements that refuse a transaction block (CREATE INDEX
   * CONCURRENTLY).
   */
  withSession<T>(work: (session: Queryable) => Promise<T>): Promise<T>
  /**
   * Calls onNotify for each NOTIFY on channel until the listener is closed. A lost connection
   * is re-established with capped, jittered backoff, and onNotify('') is then called once,
   * since notifications sent meanwhile were lost.
   */
  listen(channel: string, onNotify: (payload: string) => void): Promise<Listener>
  close(): Promise<void>
}

export interface Listener {
  /** Whether the LISTEN connection is up right now. */
  connected(): boolean
  close(): Promise<void>
}
