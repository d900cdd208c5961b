import type { Queryable } from '../database.ts'
import { quoteQualified } from '../quote.ts'
import { TRIGGER_NAMES } from '../runnerSchema/objects.ts'

export interface TriggerDetail {
  /** The table it is on: the target table or one of its partitions. */
  table: string
  name: string
  definition: string
  /** pg_trigger.tgenabled: O fires normally, D never, R only in replica mode, A always. */
  enabled: 'O' | 'D' | 'R' | 'A'
  on_update: boolean
  /** The columns of UPDATE OF, when the trigger names some. */
  update_columns: string[]
  function: string
  language: string
  /** The start of the function's body: what it does, as the catalog has it. */
  source: string
}

/** Every user trigger on a table and on its partitions, with the function it runs. */
export async function readTriggerDetails(db: Queryable, schema: string, table: string): Promise<TriggerDetail[]> {
  const { rows } = await db.query<TriggerDetail>(
    `SELECT n.nspname || '.' || c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition,
            t.tgenabled::text AS enabled, (t.tgtype & 16) <> 0 AS on_update,
            coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                      WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[])), '{}') AS update_columns,
            pn.nspname || '.' || p.proname AS function, l.lanname AS language, left(p.prosrc, 400) AS source
     FROM pg_trigger t
     JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_proc p ON p.oid = t.tgfoid
     JOIN pg_namespace pn ON pn.oid = p.pronamespace
     JOIN pg_language l ON l.oid = p.prolang
     -- pg_partition_tree lists a partitioned table and its partitions, and nothing for a plain table.
     WHERE NOT t.tgisinternal AND (t.tgrelid = $1::regclass OR t.tgrelid IN (SELECT relid FROM pg_partition_tree($1::regclass)))
     ORDER BY 1, 2`,
    [quoteQualified(schema, table)],
  )
  return rows
}

/** Does an UPDATE of only this column fire the trigger (before any suppression)? */
export function firesOnEmbeddingWrite(trigger: TriggerDetail, embeddingColumn: string): boolean {
  if (TRIGGER_NAMES.includes(trigger.name as (typeof TRIGGER_NAMES)[number]) || trigger.enabled === 'D' || !trigger.on_update) return false
  return trigger.update_columns.length === 0 || trigger.update_columns.includes(embeddingColumn)
}
