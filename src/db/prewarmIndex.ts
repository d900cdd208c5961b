import type { Queryable } from './database.ts'
import { quoteIdent } from './quote.ts'

/**
 * Loads the index into shared buffers with pg_prewarm, where that extension is installed
 * already: the runner installs no extension of its own accord. Elsewhere the warm-up queries do it.
 */
export async function prewarmIndex(db: Queryable, indexQualified: string): Promise<boolean> {
  const { rows } = await db.query<{ schema: string }>(
    `SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_prewarm'`,
  )
  if (!rows[0]) return false
  try {
    await db.query(`SELECT ${quoteIdent(rows[0].schema)}.pg_prewarm($1::regclass)`, [indexQualified])
    return true
  } catch {
    return false
  }
}
