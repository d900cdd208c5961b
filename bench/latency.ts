// Query latency and recall@10 of HNSW on the real server: full precision against half
// precision and binary quantization (re-ranked by the full vector, as index.precision: binary
// queries), over hnsw.ef_search, warm (pg_prewarm), single client, against the exact scan in
// the same run. Target (issue 27): recall@10 >= 0.95 at p95 <= 10 ms.
//   npx tsx bench/latency.ts [--vectors texts|clusters] [--rows N] [--queries N] [--build-mb N] [--only full,half,binary]
// --vectors texts (the default): generated texts embedded by the local provider
// (bench/lib/textVectors.ts), vectors like a model's; clusters: 40 clusters of near-copies, the
// stress case. --build-mb: maintenance_work_mem for the builds, default 1024; at 1,000,000 rows
// the graph needs about 9 GB to be built in memory.
import pg from 'pg'
import { benchDatabase, ensureBenchDatabase } from './lib/benchDatabase.ts'
import { ensureTextVectors } from './lib/textVectors.ts'
import { percentiles, recall as recallOf } from '../src/steps/validate/measureSearch.ts'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const option = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined)
const rows = arg('--rows', 100_000)
const queryCount = arg('--queries', 200)
const buildMb = arg('--build-mb', 1024)
const kind = option('--vectors') ?? 'texts'
const only = option('--only')?.split(',')
const exactCount = Math.min(50, queryCount)
const log = (m: string) => process.stderr.write(`${m}\n`)
let url: string
if (kind === 'clusters') url = await ensureBenchDatabase(`runner_bench_${rows}`, rows, 1536, log)
else {
  url = await benchDatabase(`runner_bench_texts_${rows}`)
  await ensureTextVectors(url, rows, queryCount, log)
}
const db = new pg.Client({ connectionString: url })
await db.connect()

// Query vectors like the data but not in it: for texts, texts drawn by the same generator; for
// clusters, a centre plus fresh noise.
const { rows: queryRows } =
  kind === 'clusters'
    ? await db.query(
        `SELECT (SELECT array_agg(ce.v[g] + 0.2 * (random() - 0.5)) FROM generate_series(1, 1536) g)::vector::text AS v
         FROM generate_series(1, $1::int) q JOIN centres ce ON ce.c = 1 + q % 40`,
        [queryCount],
      )
    : await db.query('SELECT v::text AS v FROM bench_queries ORDER BY q LIMIT $1', [queryCount])
const queries = queryRows.map((r) => r.v as string)

async function timed(sql: string, vectors: string[]) {
  const ms: number[] = []
  const distances: number[][] = []
  for (const v of vectors) {
    const started = performance.now()
    const { rows: result } = await db.query(sql, [v])
    ms.push(performance.now() - started)
    distances.push(result.map((r) => Number(r.d)))
  }
  return { ms, distances }
}

interface Config {
  name: string
  index: string
  create: string
  expr: string
  cast: string
  factor?: number
}
const allConfigs: Config[] = [
  {
    name: 'vector, vector_cosine_ops',
    index: 'items_embedding_hnsw',
    create: `CREATE INDEX IF NOT EXISTS items_embedding_hnsw ON items USING hnsw (embedding vector_cosine_ops)`,
    expr: 'embedding',
    cast: 'vector(1536)',
  },
  {
    name: 'halfvec, halfvec_cosine_ops',
    index: 'items_embedding_hnsw_half',
    create: `CREATE INDEX IF NOT EXISTS items_embedding_hnsw_half ON items USING hnsw ((embedding::halfvec(1536)) halfvec_cosine_ops)`,
    expr: '(embedding::halfvec(1536))',
    cast: 'halfvec(1536)',
  },
  // One binary index, queried with three re-rank factors (index.rerank_factor): the index hands
  // over 10 x factor candidates by Hamming distance, so ef_search is at least that many.
  ...[10, 40, 100].map((factor) => ({
    name: `binary_quantize, bit_hamming_ops, ${factor}x re-ranked`,
    index: 'items_embedding_hnsw_binary',
    create: `CREATE INDEX IF NOT EXISTS items_embedding_hnsw_binary ON items USING hnsw ((binary_quantize(embedding)::bit(1536)) bit_hamming_ops)`,
    expr: '(binary_quantize(embedding)::bit(1536))',
    cast: 'bit(1536)',
    factor,
  })),
]
const precisionOf = (c: Config) => (c.cast.startsWith('bit') ? 'binary' : c.cast.startsWith('halfvec') ? 'half' : 'full')
const configs = allConfigs.filter((c) => !only || only.includes(precisionOf(c)))
const efSearch = (c: Config) =>
  c.factor ? [...new Set([10 * c.factor, 2 * 10 * c.factor].map((ef) => Math.min(ef, 1000)))] : [40, 100, 200, 400]
const sql = (expr: string, cast: string, factor = 0) =>
  cast.startsWith('bit')
    ? // The runner's binary query: 10 x factor candidates by Hamming distance, the 10 nearest of them by the full vector.
      `SELECT id, (embedding <=> $1::vector(1536))::float8 AS d FROM (SELECT * FROM items ORDER BY ${expr} <~> binary_quantize($1::vector(1536))::${cast} LIMIT ${10 * factor}) c ORDER BY embedding <=> $1::vector(1536) LIMIT 10`
    : `SELECT id, (${expr} <=> $1::${cast})::float8 AS d FROM items ORDER BY ${expr} <=> $1::${cast} LIMIT 10`

await db.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm')
const sharedBuffers = (await db.query(`SELECT current_setting('shared_buffers') AS s`)).rows[0].s
await db.query('SET enable_indexscan = off; SET enable_bitmapscan = off')
const exact = await timed(sql('embedding', 'vector(1536)'), queries.slice(0, exactCount))
await db.query('RESET enable_indexscan; RESET enable_bitmapscan')
const exactP = percentiles(exact.ms)
log(`exact scan: p50 ${exactP.p50.toFixed(1)} ms over ${exactCount} queries`)

const lines = [
  `## Query latency: ${rows.toLocaleString('en-US')} x 1536 (${kind === 'clusters' ? '40 clusters of near-copies: the stress case' : 'generated texts through the local provider'}), nearest 10 by cosine, single client, warm`,
  '',
  `Exact scan (sequential, ${exactCount} queries): p50 ${exactP.p50.toFixed(1)} ms, p95 ${exactP.p95.toFixed(1)} ms. shared_buffers ${sharedBuffers}.`,
  '',
  '| index | build | size | ef_search | the planner chose | recall@10 | p50 | p95 | p99 | recall >= 0.95 at p95 <= 10 ms |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
]
for (const c of configs) {
  for (const other of configs) if (other.index !== c.index) await db.query(`DROP INDEX IF EXISTS ${other.index}`)
  await db.query(`SET maintenance_work_mem = '${buildMb}MB'`)
  // As the runner builds on this server's pgvector 0.8.0 (CVE-2026-3172: no parallel HNSW builds before 0.8.2).
  await db.query('SET max_parallel_maintenance_workers = 0')
  let started = performance.now()
  const built = Number((await db.query('SELECT count(*) AS n FROM pg_class WHERE relname = $1', [c.index])).rows[0].n) === 0
  await db.query(c.create)
  const build = built ? `${((performance.now() - started) / 1000).toFixed(0)} s` : 'the same'
  log(`${c.name}: index ready (${build})`)
  const size = Number((await db.query(`SELECT pg_relation_size($1::regclass) AS b`, [c.index])).rows[0].b)
  await db.query(`SELECT pg_prewarm($1::regclass)`, [c.index])
  for (const ef of efSearch(c)) {
    await db.query(`SET hnsw.ef_search = ${ef}`)
    await timed(sql(c.expr, c.cast, c.factor), queries.slice(0, 20)) // warm-up
    // The planner's choice at this setting: pgvector prices a scan of the index higher as ef_search grows.
    const { rows: planRows } = await db.query(`EXPLAIN ${sql(c.expr, c.cast, c.factor)}`, [queries[0]])
    const scan = planRows.some((r) => String(r['QUERY PLAN']).includes(c.index)) ? 'index' : 'sequential'
    started = performance.now()
    const run = await timed(sql(c.expr, c.cast, c.factor), queries)
    const p = percentiles(run.ms)
    // recall against the exact full-precision distances; the half index's own distances are close but not equal
    // (the binary query's are the full vector's already: it re-ranks by them)
    const fullDistances = c.cast.startsWith('halfvec')
      ? await (async () => {
          const ids = []
          for (const v of queries.slice(0, exactCount)) {
            const { rows: r } = await db.query(
              `SELECT (embedding <=> $1::vector(1536))::float8 AS d FROM items WHERE id = ANY(SELECT id FROM items ORDER BY ${c.expr} <=> $1::${c.cast} LIMIT 10)`,
              [v],
            )
            ids.push(r.map((x) => Number(x.d)))
          }
          return ids
        })()
      : run.distances.slice(0, exactCount)
    // recall by distance against the exact answers (ids are not compared: ties at one distance are equally right)
    const byDistance = (distances: number[][]) => ({ ms: [], ids: distances.map((d) => d.map(String)), distances })
    const recall = recallOf(byDistance(fullDistances), byDistance(exact.distances))
    lines.push(
      `| ${c.name} | ${build} | ${(size / 1024 / 1024).toFixed(0)} MB | ${ef} | ${scan} | ${recall.toFixed(3)} | ${p.p50.toFixed(2)} ms | ${p.p95.toFixed(2)} ms | ${p.p99.toFixed(2)} ms | ${p.p95 <= 10 && recall >= 0.95 && scan === 'index' ? 'yes' : 'no'} |`,
    )
    log(lines.at(-1)!)
  }
}
await db.query('RESET hnsw.ef_search')
for (const c of configs.slice(1)) await db.query(`DROP INDEX IF EXISTS ${c.index}`) // (a name twice is dropped once)
await db.end()
lines.push(
  '',
  `${queryCount} queries per row, ${kind === 'clusters' ? 'each a cluster centre plus fresh noise' : 'each a text of the same generator'} (not a row of the table); maintenance_work_mem ${buildMb} MB and no parallel workers for the builds. Command: \`npx tsx bench/latency.ts --vectors ${kind} --rows ${rows} --queries ${queryCount}${buildMb === 1024 ? '' : ` --build-mb ${buildMb}`}${only ? ` --only ${only.join(',')}` : ''}\``,
  '',
)
process.stdout.write(`${lines.join('\n')}\n`)
