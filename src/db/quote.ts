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
