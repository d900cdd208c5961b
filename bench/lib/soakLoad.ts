// The soak benchmark's other process: the fake OpenAI server, and the application's steady
// edits, so that nothing of theirs is counted in the worker's memory. Prints the fake server's
// address as one JSON line, then edits `rate` rows a second until killed.
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { startFakeOpenAI } from '../../test/helpers/fakeOpenAI.ts'

const [url, rateArg, rowsArg] = process.argv.slice(2)
const rate = Number(rateArg)
const rows = Number(rowsArg)
const fake = await startFakeOpenAI()
process.stdout.write(`${JSON.stringify({ url: fake.url, key: fake.key })}\n`)
const db = new pg.Client({ connectionString: url })
await db.connect()
for (let i = 0; ; i++) {
  const started = performance.now()
  await db.query('UPDATE docs SET body = $2 WHERE id = $1', [1 + (i % rows), `edit ${i} of a note about search latency and queue workers`])
  await sleep(Math.max(0, 1000 / rate - (performance.now() - started)))
}
