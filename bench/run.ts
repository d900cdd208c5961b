// Runs every benchmark and writes bench/results.md: each section is what one benchmark
// printed (its figures, the baseline it compares with in the same run, the command).
//   npm run bench            quick sizes, a few minutes
//   npm run bench -- --full  100,000 x 1536 on the real server, chaos x20, and the whole plan and
//                            full and half precision at 1,000,000 (about three hours)
//   npm run bench -- --out FILE   write somewhere else than bench/results.md
import { writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { execa } from 'execa'
import pg from 'pg'
import { BENCH_SERVER } from './lib/benchDatabase.ts'

const full = process.argv.includes('--full')
const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : 'bench/results.md'
const runs: [string, string[]][] = full
  ? [
      ['relevance.ts', ['--rows', '2000']],
      ['throughput.ts', ['--texts', '20000', '--tpm', '60000']],
      ['indexBuild.ts', ['--rows', '100000']],
      ['latency.ts', ['--rows', '100000', '--queries', '200']],
      ['latency.ts', ['--rows', '1000000', '--queries', '200', '--build-mb', '10000', '--only', 'full']],
      ['latency.ts', ['--rows', '1000000', '--queries', '200', '--build-mb', '6000', '--only', 'half']],
      ['latency.ts', ['--vectors', 'clusters', '--rows', '100000', '--queries', '200']],
      ['writePaths.ts', ['--rows', '50000']],
      ['backfill.ts', ['--rows', '100000']],
      ['backfillMemory.ts', ['--rows', '20000,100000']],
      ['fleet.ts', ['--rows', '20000', '--delay-ms', '200', '--workers', '1,2,4,8']],
      ['chaos.ts', ['--runs', '20', '--rows', '10000']],
      ['workerChaos.ts', ['--seconds', '60', '--rate', '40', '--workers', '3']],
      ['soak.ts', ['--minutes', '11']],
      ['reconcile.ts', ['--rows', '100000']],
      ['partitionedWrites.ts', ['--partitions', '24', '--rows-per-partition', '10000']],
      ['startup.ts', ['--runs', '9']],
      ['firstRun.ts', ['--runs', '3']],
      ['scale.ts', ['--rows', '1000000']],
    ]
  : [
      ['relevance.ts', ['--rows', '2000']],
      ['throughput.ts', ['--texts', '5000', '--tpm', '20000']],
      ['indexBuild.ts', ['--rows', '10000']],
      ['latency.ts', ['--rows', '10000', '--queries', '50']],
      ['writePaths.ts', ['--rows', '5000']],
      ['backfill.ts', ['--rows', '10000']],
      ['backfillMemory.ts', ['--rows', '5000,20000']],
      ['fleet.ts', ['--rows', '5000', '--delay-ms', '200', '--workers', '1,2,4']],
      ['chaos.ts', ['--runs', '3', '--rows', '3000']],
      ['workerChaos.ts', ['--seconds', '20', '--rate', '40', '--workers', '3']],
      ['soak.ts', ['--minutes', '3', '--every', '15']],
      ['reconcile.ts', ['--rows', '20000']],
      ['partitionedWrites.ts', ['--partitions', '12', '--rows-per-partition', '5000']],
      ['startup.ts', ['--runs', '5']],
      ['firstRun.ts', ['--runs', '1']],
      ['scale.ts', ['--rows', '20000']],
    ]

const client = new pg.Client({ connectionString: BENCH_SERVER })
await client.connect()
const server = (
  await client.query(`SELECT current_setting('server_version') AS v, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgv`)
).rows[0]
await client.end()
const sections = [
  '# Benchmark results',
  '',
  `Written by \`npm run bench${full ? ' -- --full' : ''}\` on ${new Date().toISOString().slice(0, 10)}. Machine: ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; PostgreSQL ${server.v}, pgvector ${server.pgv ?? 'not installed in the maintenance database'}, on 127.0.0.1. Timings are ratios against a baseline measured in the same run; the machine is shared, so absolute figures move.`,
  '',
]
for (const [script, args] of runs) {
  process.stderr.write(`\n== bench/${script} ${args.join(' ')}\n`)
  const result = await execa('npx', ['tsx', `bench/${script}`, ...args], { reject: false, stderr: 'inherit' })
  sections.push(result.exitCode === 0 ? result.stdout.trim() : `## bench/${script}\n\nFailed (exit ${result.exitCode}).`, '')
  writeFileSync(out, `${sections.join('\n')}\n`)
}
process.stdout.write(`${out} written\n`)
