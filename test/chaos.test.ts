import { describe, expect, it } from 'vitest'
import { serverUrl } from './helpers/databases.ts'
import { chaosRun } from './helpers/chaosRun.ts'

// A handful of chaos runs in CI; bench/chaos.ts runs twenty or more.
describe.skipIf(!serverUrl)('the whole plan under SIGKILL at random moments (real server)', () => {
  for (const seed of [1, 2, 3]) {
    it(`run ${seed}: resumes to every criterion met, with nothing lost or repeated beyond the batch being embedded at each kill`, async () => {
      const r = await chaosRun({ rows: 3000, maxKills: 4, seed })
      expect(r.exitCode).toBe(3) // every criterion met; the worker is still to deploy
      expect(r.kills).toBeGreaterThan(0)
      expect(r.criteriaPassed).toBe(true)
      expect(r.nullEmbeddings).toBe(0)
      expect(r.validIndexesPerTable).toEqual([1, 1, 1])
      expect(r.queueDuplicates).toBe(0)
      expect(r.unparsableStateReads).toBe(0)
      expect(r.leftoverProbeRows).toBe(0)
      // A kill loses what was embedded and not yet saved: one batch (the saved ones are written by the resume).
      expect(r.repeatedProviderCalls).toBeLessThanOrEqual(r.kills * r.batchSize + r.requeuedByValidate)
    }, 300_000)
  }
})
