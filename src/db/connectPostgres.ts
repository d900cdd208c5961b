import pg from 'pg'
import { parse } from 'pg-connection-string'
import pgvector from 'pgvector'
import { backoffMs } from '../retryTransient.ts'
import { encodeVectorArray, vectorArrayLiteral } from './vectorBinary.ts'
import type { Database, Listener, Queryable, QueryResult, TransactionOptions } from './database.ts'

// Type parsers for the whole pool, set once: bigint counts arrive as numbers, as they do from
// the embedded database (a value past 2^53 stays a string rather than losing digits), and
// vector/halfvec values as number arrays through the pgvector package. (pgvector's own
// registerTypes runs a query on each new client, which races the pool handing it out.)
function typeParsers(vectorOids: Map<number, (text: string) => unknown>) {
  return {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === pg.types.builtins.INT8) return (text: string) => (Number.isSafeInteger(Number(text)) ? Number(text) : text)
      return vectorOids.get(oid) ?? pg.types.getTypeParser(oid, format)
    },
  }
}

/** The URL as it may be printed: user, host, port and database, never the password. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url)
    parsed.password = ''
    return `postgres ${parsed.username ? `${decodeURIComponent(parsed.username)}@` : ''}${parsed.host}${parsed.pathname}`
  } catch {
    return 'postgres (unparsable URL)'
  }
}

/** user@host:port/database, with the driver's own defaults filled in: the same database always reads the same. */
export function fingerprintUrl(url: string): string {
  const c = parse(url)
  const host = c.host || process.env.PGHOST || 'localhost'
  const port = c.port || process.env.PGPORT || '5432'
  const user = c.user || process.env.PGUSER || process.env.USER || ''
  return `${user}@${host}:${port}/${c.database || user}`
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<Row>(sql: string, params?: unknown[]): Promise<QueryResult<Row>> {
      const result = await client.query(sql, params as unknown[])
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 }
    },
    async exec(sql: string) {
      await client.query(sql)
    },
  }
}

/**
 * A client checked out of the pool for the duration of work. A connection the server cuts
 * meanwhile (restart, pg_terminate_backend) emits 'error' on the client: without a listener
 * that would crash the process; the query in flight rejects anyway, with the reason. A broken
 * client is destroyed rather than handed back to the pool.
 */
async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  const onError = (error: Error) => (broken = error)
  client.on('error', onError)
  try {
    return await work(client)
  } finally {
    client.off('error', onError)
    client.release(broken ?? false)
  }
}

// The runner's own sessions run without the timeouts a role or a database may set (as
// pg_dump's do): an index build or a backfill write cancelled midway leaves an invalid index or
// a stalled run. Each statement that locks an application table sets its own lock_timeout
// (withLockTimeout.ts); the preflight says when this overrides a setting of the role's. Sent
// as startup options, so they are the session's reset values: RESET ALL (after withSession)
// keeps them. Options the URL carries come first; these follow and win.
const SESSION_OPTIONS = '-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0'

/** The URL without its options parameter, and the options to send: the URL's, then the runner's. */
function withSessionOptions(url: string): { connectionString: string; options: string } {
  const parsed = new URL(url)
  const own = parsed.searchParams.get('options')
  parsed.searchParams.delete('options')
  return { connectionString: parsed.toString(), options: [own, SESSION_OPTIONS].filter(Boolean).join(' ') }
}

export async function connectPostgres(url: string, options: { applicationName?: string } = {}): Promise<Database> {
  const vectorOids = new Map<number, (text: string) => unknown>()
  const config: pg.PoolConfig = {
    ...withSessionOptions(url),
    types: typeParsers(vectorOids),
    max: 4,
    application_name: options.applicationName ?? 'runner',
  }
  const pool = new pg.Pool(config)
  // An idle client that loses its connection must not crash the process.
  pool.on('error', () => {})

  // Fail early, with a clear cause, when the server is not there. Without the extension there
  // are no vector types yet: the diagnosis reports that.
  const readVectorTypes = async () =>
    (
      await pool.query<{ typname: string; oid: number }>(
        `SELECT t.typname, t.oid::int AS oid FROM pg_type t JOIN pg_extension e ON e.extnamespace = t.typnamespace AND e.extname = 'vector'
         WHERE t.typname IN ('vector', 'halfvec')`,
      )
    ).rows
  const types = await readVectorTypes()
  for (const row of types) vectorOids.set(row.oid, pgvector.fromSql)
  let vectorOid = types.find((r) => r.typname === 'vector')?.oid
  const pooled = wrap(pool)

  return {
    kind: 'postgres',
    description: describeUrl(url),
    fingerprint: fingerprintUrl(url),
    ...pooled,
    async transaction(work, txOptions: TransactionOptions = {}) {
      return withClient(pool, async (client) => {
        await client.query(txOptions.readOnly ? 'BEGIN READ ONLY' : 'BEGIN')
        try {
          const result = await work(wrap(client))
          await client.query('COMMIT')
          return result
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {})
          throw error
        }
      })
    },
    async withSession(work) {
      return withClient(pool, async (client) => {
        try {
          return await work(wrap(client))
        } finally {
          // Session settings must not leak to the next user of this pooled connection.
          await client.query('RESET ALL').catch(() => {})
        }
      })
    },
    async vectorArray(vectors) {
      // The extension may have been created after this pool was opened (a demo's set-up does so).
      vectorOid ??= (await readVectorTypes()).find((r) => r.typname === 'vector')?.oid
      return vectorOid === undefined ? vectorArrayLiteral(vectors) : encodeVectorArray(vectors, vectorOid)
    },
    listen: (channel, onNotify) => listenWithReconnect(config, channel, onNotify),
    async close() {
      await pool.end()
    },
  }
}

/**
 * A LISTEN connection of its own that outlives a server restart or a terminated backend:
 * when it ends, it is opened again after a capped, jittered backoff (0.1 s doubling to 10 s),
 * LISTENs again, and wakes the listener once for what it may have missed.
 */
async function listenWithReconnect(config: pg.ClientConfig, channel: string, onNotify: (payload: string) => void): Promise<Listener> {
  let current: pg.Client | undefined
  let closed = false
  let retry = 0
  let timer: NodeJS.Timeout | undefined

  const open = async () => {
    const client = new pg.Client(config)
    client.on('error', () => {}) // 'end' follows; reconnecting is handled there
    client.on('notification', (message) => {
      if (message.channel === channel) onNotify(message.payload ?? '')
    })
    client.on('end', () => {
      if (current !== client) return
      current = undefined
      if (!closed) reconnectLater()
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
    } catch (error) {
      await client.end().catch(() => {})
      throw error
    }
    if (closed) {
      await client.end().catch(() => {})
      return
    }
    current = client
    retry = 0
  }
  const reconnectLater = () => {
    timer = setTimeout(
      async () => {
        try {
          await open()
          onNotify('')
        } catch {
          if (!closed) reconnectLater()
        }
      },
      backoffMs(retry++, 100, 10_000),
    )
  }

  await open()
  return {
    connected: () => current !== undefined,
    async close() {
      closed = true
      clearTimeout(timer)
      const client = current
      current = undefined
      await client?.end().catch(() => {})
    },
  }
}
