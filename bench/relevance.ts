// Relevance of the offline provider on the demo corpus's labelled queries, against a purely
// lexical baseline (the same hashed features without word vectors), in one run.
//   npx tsx bench/relevance.ts [--rows N]
import { createLocalProvider } from '../src/embeddings/localProvider.ts'
import { demoLabels, generateDemo } from '../src/demo/generateDemo.ts'
import { rankingMetrics } from '../src/embeddings/rankingMetrics.ts'

const rows = Number(process.argv[process.argv.indexOf('--rows') + 1] ?? 0) || 2000
const k = 5
const demo = generateDemo(rows)
const labels = demoLabels(demo).filter((l) => l.table === 'atoms')
const documents = demo.atoms.map((a) => ({ id: a.id, text: `${a.title} ${a.content}` }))

function evaluate(name: string, provider: ReturnType<typeof createLocalProvider>) {
  const vectors = documents.map((d) => provider.embedOne(d.text))
  const rankings = labels.map((label) => {
    const q = provider.embedOne(label.query)
    const scored = vectors.map((v, i) => ({ id: documents[i]!.id, score: v.reduce((s, x, j) => s + x * q[j]!, 0) }))
    scored.sort((a, b) => b.score - a.score)
    return { ranked: scored.map((s) => s.id), relevant: new Set(label.relevant_ids) }
  })
  return { name, model: provider.model, ...rankingMetrics(rankings, k) }
}

const results = [
  evaluate('local (word vectors + lexical)', createLocalProvider({ dimensions: 1536 })),
  evaluate('lexical baseline (hashed features only)', createLocalProvider({ dimensions: 1536, semantic: false })),
]
const lines = [
  `## Relevance on the demo corpus: ${labels.length} labelled queries over ${documents.length} atoms`,
  '',
  `| provider | recall@${k} | MRR | queries with a relevant row in the top ${k} |`,
  '| --- | --- | --- | --- |',
  ...results.map((r) => `| ${r.name} | ${r.recallAtK.toFixed(3)} | ${r.mrr.toFixed(3)} | ${r.hits} of ${labels.length} |`),
  '',
  `recall@${k} is capped: relevant rows in the top ${k} divided by min(${k}, relevant rows). Command: \`npx tsx bench/relevance.ts --rows ${rows}\``,
  '',
]
process.stdout.write(`${lines.join('\n')}\n`)
