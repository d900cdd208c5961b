import { createHash } from 'node:crypto'
import pg from 'pg'

// Identifiers that come from a plan are only ever put into SQL through the driver's own
// escaping; values never are (they are $n parameters).

export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name)
}

/** "schema"."table" or "table" when no schema is given. */
export function quoteQualified(schema: string | undefined, name: string): string {
  return schema ? `${quoteIdent(schema)}.${quoteIdent(name)}` : quoteIdent(name)
}

export function quoteLiteral(value: string): string {
  return pg.escapeLiteral(value)
}

/** A name of the runner's own that PostgreSQL keeps whole: over 63 bytes, cut and suffixed with a hash so two long names stay apart. */
export function fitIdentifier(name: string): string {
  if (Buffer.byteLength(name) <= 63) return name
  let cut = name.slice(0, 50)
  while (Buffer.byteLength(cut) > 50) cut = cut.slice(0, -1)
  return `${cut}_${createHash('sha256').update(name).digest('hex').slice(0, 12)}`
}
