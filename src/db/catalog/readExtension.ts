import type { Queryable } from '../database.ts'
import type { Extension } from './vocabulary.ts'

export async function readExtension(db: Queryable): Promise<Extension> {
  const { rows } = await db.query<{ installed_version: string | null; default_version: string }>(
    `SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'vector'`,
  )
  return { installed_version: rows[0]?.installed_version ?? null, available_version: rows[0]?.default_version ?? null }
}

export async function readServerVersion(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)
  return rows[0]!.v
}

/** Whether a dotted version (0.7.4) is older than another (0.8.0). */
export function versionBelow(version: string, baseline: string): boolean {
  const a = version.split('.').map(Number)
  const b = baseline.split('.').map(Number)
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0)
  }
  return false
}
