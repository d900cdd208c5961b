// The whole plan SIGKILLed at random moments and resumed until done, many times over.
//   npx tsx bench/chaos.ts [--runs 20] [--rows 10000]
// The chaos run makes its databases on the server the tests use; default to the local one.
process.env.TEST_DATABASE_URL ??= process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const { chaosRun } = await import('../test/helpers/chaosRun.ts')
const { buildCli } = await import('./lib/buildCli.ts')
await buildCli() // the chaos runs spawn the compiled CLI

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const runs = arg('--runs', 20)
const rows = arg('--rows', 10_000)
const lines = [
  `## Chaos: the whole plan on ${rows.toLocaleString('en-US')} demo rows, SIGKILLed at random and resumed`,
  '',
  '| run | kills | exit | criteria | NULL | valid indexes per table | queue duplicates | repeated provider calls (limit: 1 batch a kill, plus the rows validate requeues) | unparsable state reads | leftover probes | seconds |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
]
let bad = 0
for (let seed = 1; seed <= runs; seed++) {
  const r = await chaosRun({ rows, maxKills: 6, seed })
  const ok =
    r.exitCode === 3 && // every criterion met; the worker is still to deploy
    r.criteriaPassed &&
    r.nullEmbeddings === 0 &&
    r.validIndexesPerTable.every((n) => n === 1) &&
    r.queueDuplicates === 0 &&
    r.unparsableStateReads === 0 &&
    r.leftoverProbeRows === 0 &&
    r.repeatedProviderCalls <= r.kills * r.batchSize + r.requeuedByValidate
  if (!ok) bad++
  lines.push(
    `| ${seed} | ${r.kills} | ${r.exitCode} | ${r.criteriaPassed ? 'all met' : '**not met**'} | ${r.nullEmbeddings} | ${r.validIndexesPerTable.join('/')} | ${r.queueDuplicates} | ${r.repeatedProviderCalls} (${r.kills * r.batchSize + r.requeuedByValidate}) | ${r.unparsableStateReads} | ${r.leftoverProbeRows} | ${r.seconds.toFixed(0)} |`,
  )
  process.stderr.write(`${lines.at(-1)}\n`)
}
lines.push('', `${runs - bad} of ${runs} runs kept every promise. Command: \`npx tsx bench/chaos.ts --runs ${runs} --rows ${rows}\``, '')
process.stdout.write(`${lines.join('\n')}\n`)
