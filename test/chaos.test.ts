import { describe, expect, it } from 'vitest'
import { serverUrl } from './helpers/databases.ts'
import { chaosRun } from './helpers/chaosRun.ts'

// A handful of chaos runs in CI; bench/chaos.ts runs twenty or more.
describe.skipIf(!serverUrl)('the whole plan under SIGKILL at random moments (real server)', () => {
  for (const seed of [1, 2, 3]) {
    it(`run ${seed}: resumes to every criterion met, with nothing lost or repeated beyond the two batches in flight per kill`, async () => {
      const r = await chaosRun({ rows: 3000, maxKills: 4, seed })
      expect(r.exitCode).toBe(0)
      expect(r.kills).toBeGreaterThan(0)
      expect(r.criteriaPassed).toBe(true)
      expect(r.nullEmbeddings).toBe(0)
      expect(r.validIndexesPerTable).toEqual([1, 1, 1])
      expect(r.queueDuplicates).toBe(0)
      expect(r.unparsableStateReads).toBe(0)
      expect(r.leftoverProbeRows).toBe(0)
      // A kill loses what was in flight: the batch being embedded, and the one being written if it had not committed.
      expect(r.repeatedProviderCalls).toBeLessThanOrEqual(2 * r.kills * r.batchSize + r.requeuedByValidate)
    }, 300_000)
  }
})
