// Start-up of the CLI, whole process: wall time and peak memory (GNU time's maximum resident
// set), median of several runs, each against bare `node -e 0` measured in the same run. Also
// the CLI as it started before it was compiled (TypeScript through tsx), for the before/after.
//   npx tsx bench/startup.ts [--runs 7]
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { stringify } from 'yaml'
import { loadPlan } from '../src/plan/loadPlan.ts'
import { freshBenchDatabase, urlFor } from './lib/benchDatabase.ts'
import { buildCli } from './lib/buildCli.ts'
import { measureProcess, median } from './lib/measureProcess.ts'

await buildCli()

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const runs = arg('--runs', 7)
const root = join(import.meta.dirname, '..')
const log = (m: string) => process.stderr.write(`${m}\n`)

/** Wall milliseconds and peak RSS (MB) of one process. */
async function measure(command: string[], env: Record<string, string> = {}, cwd = root): Promise<{ ms: number; mb: number }> {
  const { s, mb } = await measureProcess(command, env, cwd)
  return { ms: s * 1000, mb }
}

async function medianOf(command: string[], env?: Record<string, string>, cwd?: string) {
  await measure(command, env, cwd) // warm the file cache
  const samples = []
  for (let i = 0; i < runs; i++) samples.push(await measure(command, env, cwd))
  return { ms: median(samples.map((s) => s.ms)), mb: median(samples.map((s) => s.mb)) }
}

const work = mkdtempSync(join(tmpdir(), 'bench-startup-'))
const bin = join(root, 'bin/runner.js')

// A demo on the real server with its embeddings, for `search`; and the embedded demo.
log('preparing the demo on the server and embedded (local provider) ...')
const name = 'bench_startup'
await freshBenchDatabase(name)
const shipped = structuredClone(loadPlan(join(root, 'plans/feature-1.yaml')).plan) as any
shipped.target.embedded = { path: join(work, 'embedded'), demo_rows: 500 }
shipped.embedding.provider = 'local'
shipped.criteria.auto_embed_within_seconds = null
const planPath = join(work, 'plan.yaml')
writeFileSync(planPath, stringify(shipped))
const cache = { RUNNER_CACHE_DIR: join(work, 'cache') }
await execa('node', [bin, 'demo', 'init', '--rows', '500', '--database', urlFor(name)], { cwd: work })
await execa('node', [bin, 'start', planPath, '--sessions-dir', join(work, 'sessions')], {
  cwd: work,
  env: { ...cache, DATABASE_URL: urlFor(name) },
  reject: false,
})
await execa('node', [bin, 'start', planPath, '--sessions-dir', join(work, 'sessions')], {
  cwd: work,
  env: { ...cache, DATABASE_URL: '' },
  reject: false,
})

const search = ['search', 'vector index latency', '--plan', planPath, '-k', '5']
const cases: [string, string[], Record<string, string>][] = [
  ['`runner --help`', ['node', bin, '--help'], {}],
  ['`runner --version`', ['node', bin, '--version'], {}],
  [
    '`runner --help` before: TypeScript compiled at start by tsx',
    ['node', '--import', import.meta.resolve('tsx'), join(root, 'src/cli/bin.ts'), '--help'],
    {},
  ],
  ['`runner search` on a server target (local provider, cache built)', ['node', bin, ...search], { ...cache, DATABASE_URL: urlFor(name) }],
  ['`runner search` on the embedded demo', ['node', bin, ...search], { ...cache, DATABASE_URL: '' }],
]
const bare = await medianOf(['node', '-e', '0'])
const rows = [`| bare \`node -e 0\` (baseline) | ${bare.ms.toFixed(0)} ms | 1.0x | ${bare.mb.toFixed(0)} MB |`]
for (const [label, command, env] of cases) {
  log(label)
  const m = await medianOf(command, { PATH: process.env.PATH!, ...env }, work)
  rows.push(`| ${label} | ${m.ms.toFixed(0)} ms | ${(m.ms / bare.ms).toFixed(1)}x | ${m.mb.toFixed(0)} MB |`)
}
process.stdout.write(
  [
    `## Start-up, whole process, median of ${runs} runs`,
    '',
    '| command | wall | against bare Node | peak memory |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    `Targets: \`--help\` within 3x bare Node and under 80 MB; \`search\` on a server target under 300 ms. GNU time's wall clock has a 10 ms resolution. Command: \`npx tsx bench/startup.ts --runs ${runs}\``,
    '',
  ].join('\n'),
)
