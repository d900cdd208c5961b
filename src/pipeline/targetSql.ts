import { quoteIdent, quoteQualified } from '../db/quote.ts'
import type { TargetTable } from '../plan/schema.ts'

// SQL fragments for one target table, built once from the plan: every identifier is quoted
// by the driver's escaping. The embedded text is the text columns joined by a space
// (concat_ws skips NULLs); its sha256 is the content hash that guards every embedding write.

export interface TargetSql {
  /** 'public.atoms': how the queue names the table. */
  name: string
  table: string
  key: string
  embedding: string
  text: (alias?: string) => string
  hash: (alias?: string) => string
  /** The text columns, for UPDATE OF. */
  textColumns: string
  /** A name for this table's trigger function, unique within the runner schema. */
  functionName: string
}

export function targetSql(t: TargetTable): TargetSql {
  const column = (alias: string | undefined, c: string) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c))
  const text = (alias?: string) => `concat_ws(' ', ${t.text_columns.map((c) => column(alias, c)).join(', ')})`
  return {
    name: `${t.schema}.${t.table}`,
    table: quoteQualified(t.schema, t.table),
    key: quoteIdent(t.key),
    embedding: quoteIdent(t.embedding_column),
    text,
    hash: (alias?: string) => `encode(sha256(convert_to(${text(alias)}, 'UTF8')), 'hex')`,
    textColumns: t.text_columns.map((c) => quoteIdent(c)).join(', '),
    functionName: quoteIdent(`enqueue_${t.schema}_${t.table}`.slice(0, 63)),
  }
}
