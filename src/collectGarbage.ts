import v8 from 'node:v8'
import vm from 'node:vm'

// A long batch loop allocates per-batch buffers of a megabyte or more (the provider's answer,
// the vectors in binary) that V8 places straight in its old generation and frees only at a
// full collection, which it puts off while the heap may still grow: the process's memory then
// climbs with the table though little stays alive (about 35 MB at 100,000 rows). A full
// collection every few batches, some 20 ms on that heap, keeps the peak flat
// (bench/backfillMemory.ts). Node exposes the collector only behind a flag, set here once.

/** Batches between full collections, counted across tables and partitions (a partition may hold fewer than this). */
const BATCHES_BETWEEN_COLLECTIONS = 8
let batches = 0
let gc: (() => void) | undefined

/** A batch was written and its buffers are garbage: every few batches, a full collection. */
export function batchWritten(): void {
  if (++batches % BATCHES_BETWEEN_COLLECTIONS === 0) collectGarbage()
}

export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc')
    gc = vm.runInNewContext('gc') as () => void
  }
  gc()
}
