import { dirname } from 'node:path'
import type { Database } from '../db/database.ts'
import { connectUrl, openEmbeddedLazily } from '../db/openTarget.ts'
import { demoLabelsPath, seedDemo } from '../demo/seedDemo.ts'
import { UsageError } from '../errors.ts'
import { log } from '../log/log.ts'
import { createProgress } from '../log/progress.ts'

export interface DemoInitOptions {
  rows: string
  database?: string
  embeddedPath: string
  labelsPath?: string
}

export async function demoInit(options: DemoInitOptions): Promise<number> {
  const rows = Number(options.rows)
  if (!Number.isInteger(rows) || rows < 1 || rows > 10_000_000) {
    throw new UsageError(`--rows: expected a whole number from 1 to 10000000, got "${options.rows}"`)
  }
  const db: Database = options.database ? await connectUrl(options.database) : await openEmbeddedLazily(options.embeddedPath)
  try {
    log(`target: ${db.description}`)
    const started = Date.now()
    const task = createProgress().start('demo rows', rows + 40)
    const labelsPath = options.labelsPath ?? demoLabelsPath(dirname(options.embeddedPath), db.description)
    const result = await seedDemo(db, rows, labelsPath, (done) => task.update(done))
    if (!result.created) {
      log(
        `the demo tables already exist (${result.rows.topics} topics, ${result.rows.atoms} atoms, ${result.rows.messages} messages); left as they are`,
      )
    } else {
      task.finish(`${((Date.now() - started) / 1000).toFixed(1)} s`)
      log(
        `created ${result.rows.topics} topics, ${result.rows.atoms} atoms, ${result.rows.messages} messages (embeddings NULL, no vector index); labelled queries in ${labelsPath}`,
      )
    }
    return 0
  } finally {
    await db.close()
  }
}
