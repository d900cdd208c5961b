// Embedding throughput: the local provider on one core, and how busy the openai path keeps a
// rate limit that the fake server enforces (tokens per minute, continuously refilled).
//   npx tsx bench/throughput.ts [--texts N] [--tpm N]
import { createLocalProvider } from '../src/embeddings/localProvider.ts'
import { createOpenAIProvider } from '../src/embeddings/openaiProvider.ts'
import { generateDemo } from '../src/demo/generateDemo.ts'
import { startFakeOpenAI } from '../test/helpers/fakeOpenAI.ts'

const arg = (name: string, fallback: number) => Number(process.argv[process.argv.indexOf(name) + 1] ?? 0) || fallback
const count = arg('--texts', 20_000)
const tpm = arg('--tpm', 60_000)
const demo = generateDemo(count)
const texts = demo.atoms.map((a) => `${a.title} ${a.content}`).concat(demo.messages.map((m) => m.content))

const local = createLocalProvider({ dimensions: 1536 })
local.embedOne('warm up')
let started = performance.now()
await local.embed(texts)
const localRate = texts.length / ((performance.now() - started) / 1000)

// The openai path: send 1.5 minutes' worth of tokens at the limit. The first minute's worth
// fits the full bucket at once; the rest can go no faster than the refill.
const fake = await startFakeOpenAI({ tokensPerMinute: tpm })
const provider = createOpenAIProvider({
  model: 'text-embedding-3-small',
  dimensions: 64,
  apiKey: fake.key,
  baseURL: fake.url,
  maxInputsPerRequest: 64,
  concurrency: 4,
})
const perText = provider.estimateCost(texts.slice(0, 500)).tokens / 500
const sendTexts = texts.slice(0, Math.floor((1.5 * tpm) / perText))
const tokens = provider.estimateCost(sendTexts).tokens
started = performance.now()
const result = await provider.embed(sendTexts)
const seconds = (performance.now() - started) / 1000
const idealSeconds = Math.max(0, ((tokens - tpm) / tpm) * 60)
await fake.close()
const refused = fake.requests.filter((r) => r.status === 429).length

const lines = [
  '## Embedding throughput',
  '',
  `- local provider, one core: ${texts.length.toLocaleString('en-US')} demo texts at ${localRate.toFixed(0)} texts/s (target >= 2,000).`,
  `- openai path against a fake server enforcing ${tpm.toLocaleString('en-US')} tokens/min: ${sendTexts.length.toLocaleString('en-US')} texts, ${tokens.toLocaleString('en-US')} tokens in ${seconds.toFixed(1)} s; the limit allows it in ${idealSeconds.toFixed(1)} s at best, so the limit was kept ${((100 * idealSeconds) / seconds).toFixed(1)}% busy (target >= 90%). Requests: ${fake.requests.length}, refused with 429: ${refused}, retries: ${provider.stats.retries}, failures: ${result.failures.length}.`,
  '',
  `Command: \`npx tsx bench/throughput.ts --texts ${count} --tpm ${tpm}\``,
  '',
]
process.stdout.write(`${lines.join('\n')}\n`)
