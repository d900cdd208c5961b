import type { Queryable } from '../database.ts'

/** A server setting as the current session sees it, in bytes when it is a size (shared_buffers). */
export async function readSettingBytes(db: Queryable, name: string): Promise<number> {
  const { rows } = await db.query<{ b: number }>('SELECT pg_size_bytes(current_setting($1))::float8 AS b', [name])
  return rows[0]!.b
}

export async function readSetting(db: Queryable, name: string): Promise<string> {
  const { rows } = await db.query<{ v: string }>('SELECT current_setting($1) AS v', [name])
  return rows[0]!.v
}

/** Whether the server runs on this very machine (then its free memory is ours to read). */
export async function serverIsLocal(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ addr: string | null }>('SELECT host(inet_server_addr()) AS addr')
  const addr = rows[0]!.addr
  return addr === null || addr === '127.0.0.1' || addr === '::1'
}

/** The tables of one schema, by name. */
export async function readTableNames(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [schema])
  return rows.map((r) => r.name)
}
