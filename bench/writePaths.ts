// How the backfill should write a batch of 1536-dimension embeddings, measured three ways, each
// the runner's whole write (writeStatement: hash check, model check, metadata, queue), on the
// same rows and vectors, one batch at a time:
//  - one statement, the vectors as one text parameter (how pgvector's Node package sends them;
//    the runner before this benchmark);
//  - one statement, the vectors as one binary vector[] parameter (writeEmbeddings: the worker's
//    write, and the backfill's with a provider free to repeat, the local one);
//  - the batch saved first as one row of the runner's staging table (the same binary vector[]),
//    then written from there (stageEmbeddings, writeStagedBatch: the backfill's write with a
//    paid provider, saved before the next batch is asked for so that a crash pays for at most one);
//  - binary COPY of the batch into an unlogged staging table, then one UPDATE join from it.
// The bound beside them is one bare UPDATE ... FROM a table already holding every vector.
// The CPU of this process per row matters as much as the rate: the backfill's embedding shares
// this process's thread with it.
//   npx tsx bench/writePaths.ts [--rows 50000] [--batch 256]
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import { connectPostgres } from '../src/db/connectPostgres.ts'
import { bindColumnModels } from '../src/db/runnerSchema/columnModels.ts'
import { runnerSchema } from '../src/db/runnerSchema/objects.ts'
import { resolveTargets } from '../src/db/target.ts'
import { generateDemo } from '../src/demo/generateDemo.ts'
import { createLocalProvider } from '../src/embeddings/localProvider.ts'
import { installPipeline } from '../src/pipeline/installPipeline.ts'
import { vectorArrayLiteral } from '../src/db/vectorBinary.ts'
import {
  type EmbeddedRow,
  runWrite,
  stageEmbeddings,
  writeEmbeddings,
  writeStagedBatch,
  writeStatement,
} from '../src/pipeline/writeEmbeddings.ts'
import { planSchema } from '../src/plan/schema.ts'
import { freshBenchDatabase } from './lib/benchDatabase.ts'
import { encodeCopyBinary } from './lib/copyBinary.ts'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const ROWS = arg('--rows', 50_000)
const BATCH = arg('--batch', 256)
const DIMS = 1536
const DISTINCT = 2048 // vectors embedded once and reused: this measures writing, not embedding
const log = (m: string) => process.stderr.write(`${m}\n`)

const url = await freshBenchDatabase('bench_write_paths')
const db = await connectPostgres(url)
const texts = generateDemo(2 * DISTINCT)
  .atoms.slice(0, DISTINCT)
  .map((a) => `${a.title} ${a.content}`)
log(`${ROWS.toLocaleString('en-US')} rows, ${DISTINCT} distinct local-provider vectors of ${DIMS} dimensions ...`)
await db.exec(`CREATE EXTENSION vector; CREATE TABLE docs (id bigint PRIMARY KEY, body text NOT NULL, embedding vector(${DIMS}))`)
await db.query('INSERT INTO docs SELECT g, ($1::text[])[1 + g % $2], NULL FROM generate_series(1, $3::int) g', [texts, DISTINCT, ROWS])
await db.exec('VACUUM ANALYZE docs')
const provider = createLocalProvider({ dimensions: DIMS })
const vectors = (await provider.embed(texts)).vectors as number[][]

const plan = planSchema.parse({
  id: 'bench',
  title: 'bench',
  target: { tables: [{ table: 'docs', key: 'id', text_columns: ['body'], embedding_column: 'embedding', distance: 'cosine' }] },
  embedding: { provider: 'local', model: provider.model, dimensions: DIMS },
  batches: [{ id: 'b', title: 'b', agent: 'a', step: 'backfill' }],
})
const rs = runnerSchema(plan.target.runner_schema)
const [target] = await resolveTargets(db, plan)
await installPipeline(db, rs, [target!])
await bindColumnModels(db, rs, [target!], provider)
const policy = { suppressTriggers: true }

type Write = (rows: EmbeddedRow[]) => Promise<number>
const asText = { ...db, vectorArray: async (vectors: number[][]) => vectorArrayLiteral(vectors) }
const textStatement: Write = async (rows) => (await writeEmbeddings(asText, rs, target!, rows, provider.model, policy)).written.length
const binaryStatement: Write = async (rows) => (await writeEmbeddings(db, rs, target!, rows, provider.model, policy)).written.length
const savedThenWritten: Write = async (rows) =>
  (await writeStagedBatch(db, rs, target!, await stageEmbeddings(db, rs, target!, rows, provider.model), policy)).written.length
// The staging table as it would have to be to compete: unlogged, the vector kept in the row
// (a row may fill its page) rather than in TOAST, which measured 2.3x slower to COPY into.
await db.exec(`CREATE UNLOGGED TABLE staging (batch text, key text, hash text, model text, embedding vector) WITH (toast_tuple_target = 8160);
  ALTER TABLE staging ALTER COLUMN embedding SET STORAGE MAIN; CREATE INDEX ON staging (batch)`)
const copier = new pg.Client({ connectionString: url })
await copier.connect()
let batches = 0
const stagedSource = 'DELETE FROM staging WHERE batch = $3 RETURNING key, hash, model, embedding'
const copyThenUpdate: Write = async (rows) => {
  const batch = String(++batches)
  const encoded = encodeCopyBinary(rows.map((r) => [batch, r.key, r.hash, provider.model, r.vector]))
  await pipeline(
    Readable.from([encoded]),
    copier.query(copyFrom('COPY staging (batch, key, hash, model, embedding) FROM STDIN WITH (FORMAT binary)')),
  )
  return (await runWrite(db, writeStatement(rs, target!, stagedSource), [target!.name, 'embedding', batch], policy)).written.length
}

/** Every row written batch by batch, from NULL; rows per second and this process's CPU per row. */
async function measure(write: Write): Promise<{ rate: number; cpuUs: number }> {
  await db.exec(`UPDATE docs SET embedding = NULL; TRUNCATE ${rs.meta}`)
  await db.exec('VACUUM ANALYZE docs')
  let written = 0
  const cpu = process.cpuUsage()
  const started = performance.now()
  for (let after = 0; after < ROWS; after += BATCH) {
    const page = await target!.readNullPage(db, after === 0 ? null : String(after), BATCH)
    written += await write(page.map((r) => ({ key: r.key, hash: r.hash, vector: vectors[Number(r.key) % DISTINCT]! })))
  }
  const seconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  if (written !== ROWS) throw new Error(`wrote ${written} of ${ROWS}`)
  return { rate: written / seconds, cpuUs: (used.user + used.system) / written }
}

log('one statement per batch, vectors as text ...')
const statement = await measure(textStatement)
log('one statement per batch, vectors in binary ...')
const binary = await measure(binaryStatement)
log('saved in the staging table, then written from it ...')
const saved = await measure(savedThenWritten)
log('COPY into staging, then one UPDATE join ...')
const copy = await measure(copyThenUpdate)
await copier.end()
log('the bound: one bare UPDATE ... FROM a table holding every vector ...')
await db.exec('CREATE TABLE filled AS SELECT id, embedding FROM docs; ANALYZE filled; UPDATE docs SET embedding = NULL')
await db.exec('VACUUM ANALYZE docs')
const started = performance.now()
await db.exec('UPDATE docs t SET embedding = f.embedding FROM filled f WHERE f.id = t.id')
const bare = ROWS / ((performance.now() - started) / 1000)
await db.close()

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
process.stdout.write(
  [
    `## Backfill writes: ${ROWS.toLocaleString('en-US')} rows x ${DIMS}, batches of ${BATCH}, the runner's whole write`,
    '',
    '| write | rows/s | ratio | CPU of the runner per row |',
    '| --- | --- | --- | --- |',
    `| one statement, the vectors as one text parameter (baseline: the runner before) | ${fmt(statement.rate)} | 1.00 | ${fmt(statement.cpuUs)} µs |`,
    `| one statement, the vectors as one binary \`vector[]\` parameter (the worker's; the backfill's with the local provider) | ${fmt(binary.rate)} | ${(binary.rate / statement.rate).toFixed(2)} | ${fmt(binary.cpuUs)} µs |`,
    `| the same vectors saved as one staging row, then written from it (the backfill's with a paid provider) | ${fmt(saved.rate)} | ${(saved.rate / statement.rate).toFixed(2)} | ${fmt(saved.cpuUs)} µs |`,
    `| binary COPY into an unlogged staging table, then one UPDATE join | ${fmt(copy.rate)} | ${(copy.rate / statement.rate).toFixed(2)} | ${fmt(copy.cpuUs)} µs |`,
    `| bound: one bare \`UPDATE ... FROM\` of every vector, already in the database | ${fmt(bare)} | ${(bare / statement.rate).toFixed(2)} | |`,
    '',
    `Command: \`npx tsx bench/writePaths.ts --rows ${ROWS} --batch ${BATCH}\``,
    '',
  ].join('\n'),
)
