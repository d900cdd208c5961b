import { MESSAGE_OPENERS, SUBJECTS, type Fact, type Subject } from './corpus.ts'

// Builds the demo application's rows from the corpus, deterministically: the same row count
// always gives the same rows. Ids are assigned so that a row's fact is known, which is what
// makes the labelled queries exact at any size.

export interface DemoRows {
  topics: { id: number; name: string; description: string }[]
  atoms: { id: number; topic_id: number; title: string; content: string }[]
  messages: { id: number; topic_id: number; author: string; content: string }[]
}

export interface DemoLabel {
  query: string
  table: string
  relevant_ids: number[]
}

const FACTS: { subject: Subject; fact: Fact }[] = SUBJECTS.flatMap((subject) => subject.facts.map((fact) => ({ subject, fact })))
const AUTHORS = ['ana', 'bo', 'chen', 'dara', 'eli', 'femi', 'gus', 'hana']

/** A small seeded PRNG (mulberry32): deterministic rows without a dependency. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pick = <T>(items: readonly T[], next: () => number): T => items[Math.floor(next() * items.length)]!

/** rows = atoms + messages; 60% atoms. One topic per fact. */
export function generateDemo(rows: number, seed = 1): DemoRows {
  const next = random(seed)
  const atomCount = Math.ceil(rows * 0.6)
  const messageCount = rows - atomCount
  const topics = FACTS.map(({ subject, fact }, i) => ({
    id: i + 1,
    name: fact.topic,
    description: `${subject.name}: ${fact.paraphrases[0]}`,
  }))
  const atoms: DemoRows['atoms'] = []
  for (let i = 0; i < atomCount; i++) {
    const index = i % FACTS.length
    const { subject, fact } = FACTS[index]!
    const sentences = [pick(fact.paraphrases, next), pick(subject.background, next)]
    if (next() < 0.3) sentences.push(pick(fact.paraphrases, next))
    // A detail of its own, as real notes have: without it 100,000 rows would be a few hundred
    // texts repeated, and ties at equal distance are not what an application's data looks like.
    sentences.push(`(note ${i + 1}, ${pick(AUTHORS, next)})`)
    atoms.push({ id: i + 1, topic_id: index + 1, title: fact.topic, content: sentences.join(' ') })
  }
  const messages: DemoRows['messages'] = []
  for (let i = 0; i < messageCount; i++) {
    const index = i % FACTS.length
    const { fact } = FACTS[index]!
    messages.push({
      id: i + 1,
      topic_id: index + 1,
      author: pick(AUTHORS, next),
      content: `${pick(MESSAGE_OPENERS, next)} ${pick(fact.paraphrases, next)} (#${i + 1})`,
    })
  }
  return { topics, atoms, messages }
}

/** Labelled queries for the generated rows: each query's relevant rows are those built from its fact. */
export function demoLabels(demo: DemoRows): DemoLabel[] {
  return FACTS.flatMap(({ fact }, index) => [
    { query: fact.query, table: 'atoms', relevant_ids: demo.atoms.filter((a) => a.topic_id === index + 1).map((a) => a.id) },
    { query: fact.query, table: 'messages', relevant_ids: demo.messages.filter((m) => m.topic_id === index + 1).map((m) => m.id) },
    { query: fact.query, table: 'topics', relevant_ids: [index + 1] },
  ])
}
