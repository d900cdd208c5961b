import type { Queryable } from '../database.ts'
import type { QueryPlan } from './vocabulary.ts'

type Transactional = Queryable & { transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> }

/**
 * EXPLAIN (ANALYZE, BUFFERS) of one query, and what it says: which scan, which index, how
 * long. With forceIndex, sequential scans are disabled for this one transaction: on a small
 * table the planner rightly prefers a scan, and this shows whether an index could serve the
 * query at all.
 */
export async function explainQuery(
  db: Transactional,
  sql: string,
  params: unknown[],
  where: { table: string; column: string; relation: string },
  options: { forceIndex?: boolean } = {},
): Promise<QueryPlan> {
  const explain = async (q: Queryable) => (await q.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params)).rows
  const rows = options.forceIndex
    ? await db.transaction(async (tx) => {
        await tx.exec('SET LOCAL enable_seqscan = off')
        return explain(tx)
      })
    : await explain(db)
  const plan = elideVectors(rows.map((r) => r['QUERY PLAN']).join('\n'))
  const { scan, index_name } = await readScan(db, where.relation, plan)
  const execution = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? Number.NaN)
  return { table: where.table, column: where.column, sql, plan, scan, index_name, execution_ms: execution }
}

/** What a plan's text says of a table: an index scan (by which index), a sequential scan, or something else. */
export async function readScan(
  db: Queryable,
  relation: string,
  plan: string,
): Promise<{ scan: 'index' | 'sequential' | 'other'; index_name: string | null }> {
  // EXPLAIN quotes a name that needs it ("docs_Embedding Vec_hnsw"), doubling any quote inside.
  const used = [...plan.matchAll(/Index (?:Only )?Scan using ("(?:[^"]|"")+"|\S+)/g)].map(([, name]) =>
    name!.startsWith('"') ? name!.slice(1, -1).replace(/""/g, '"') : name!,
  )
  // On a partitioned table the plan scans each partition's index (a Merge Append): they are
  // one index to the application, named by the partitioned index they are attached to.
  const roots = await indexRoots(db, relation, used)
  const index = roots.length === 1 ? roots[0]! : null
  const sequential = /Seq Scan on/.test(plan)
  return { scan: index && !sequential ? 'index' : sequential ? 'sequential' : 'other', index_name: index }
}

/** The distinct indexes of the table (or of its partition tree) that these index names belong to, by their topmost parent. */
async function indexRoots(db: Queryable, relation: string, names: string[]): Promise<string[]> {
  if (names.length === 0) return []
  const { rows } = await db.query<{ root: string }>(
    `SELECT DISTINCT coalesce(root.relname, i.relname) AS root
     FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
     LEFT JOIN pg_class root ON root.oid = pg_partition_root(i.oid)
     WHERE i.relname = ANY($2::text[])
       AND (ix.indrelid = $1::regclass OR ix.indrelid IN (SELECT relid FROM pg_partition_tree($1::regclass)))`,
    [relation, [...new Set(names)]],
  )
  return rows.map((r) => r.root)
}

const SHOWN_VALUES = 3

/**
 * A plan prints the query vector in full wherever it sorts or filters by it ('[0.0123,...]'::vector,
 * 1536 values a line): kept to its first values and its length, so a plan stays readable and a
 * session folder does not fill with vectors. Every plan the runner stores or prints passes here.
 */
export function elideVectors(text: string): string {
  return text
    .replace(/'\[([^\]']*)\]'/g, (literal, body: string) => {
      const values = body.split(',')
      return values.length <= SHOWN_VALUES * 2 ? literal : `'[${values.slice(0, SHOWN_VALUES).join(',')},… ${values.length} values]'`
    })
    .replace(/'([01]{64,})'::bit/g, (_literal, bits: string) => `'${bits.slice(0, 16)}… ${bits.length} bits'::bit`) // a binary-quantized query
}
