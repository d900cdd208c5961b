// How much maintenance_work_mem an HNSW build needs for its graph to fit. When it does not
// fit, pgvector switches to a much slower on-disk build ("hnsw graph no longer fits into
// maintenance_work_mem"); measured on these machines: 100,000 x 1536 took 62 s with enough
// memory and 341 s with the default 64MB.

export interface BuildMemory {
  estimatedMb: number
  chosenMb: number
  /** Why the chosen figure is below the estimate, when it is. */
  cappedBy?: string
}

/** Bytes a dimension takes in the graph, by the type indexed: a bit for binary, two for halfvec, four for vector. */
export const BYTES_PER_DIMENSION = { vector: 4, halfvec: 2, bit: 0.125 } as const

/**
 * The graph holds each element's vector and its neighbour lists (2m at layer 0, m above, with
 * about 1/ln(m) of elements on upper layers). Measured here, 100,000 x 1536 at m=16 builds an
 * index of 781 MB: ~7.8 KB a row against the ~6.2 KB this formula gives for vector and lists,
 * so a 1.4x margin covers tuple headers and page overhead.
 */
export function estimateGraphMb(rows: number, dimensions: number, bytesPerDimension: 0.125 | 2 | 4, m: number): number {
  const perElement = dimensions * bytesPerDimension + 8 + 2 * m * 10 + m * 10 * (1 / Math.log(m)) + 64
  return Math.ceil((rows * perElement * 1.4) / (1024 * 1024))
}

export function sizeBuildMemory(estimatedMb: number, planMaxMb: number, machineFreeMb?: number): BuildMemory {
  const floorMb = 64 // never below PostgreSQL's own default
  let chosenMb = Math.max(floorMb, estimatedMb)
  let cappedBy: string | undefined
  if (chosenMb > planMaxMb) {
    chosenMb = planMaxMb
    cappedBy = `index.max_maintenance_work_mem_mb (${planMaxMb} MB)`
  }
  if (machineFreeMb !== undefined && chosenMb > machineFreeMb / 2) {
    chosenMb = Math.max(floorMb, Math.floor(machineFreeMb / 2))
    cappedBy = `half the server machine's free memory (${Math.floor(machineFreeMb)} MB free)`
  }
  return { estimatedMb, chosenMb, ...(cappedBy ? { cappedBy } : {}) }
}

/**
 * What to do when the graph does not fit: the build still runs, but on disk and several times
 * slower (5.5x measured here on 100,000 x 1536). Raise the cap, or build at half precision,
 * whose graph is about half the size. Undefined when the graph fits.
 */
export function recommendBuildMemory(memory: BuildMemory, halfPrecisionMb: number | null): string | undefined {
  if (memory.chosenMb >= memory.estimatedMb) return undefined
  const raise = memory.cappedBy?.startsWith('index.max_maintenance_work_mem_mb')
    ? `raise index.max_maintenance_work_mem_mb to ${memory.estimatedMb}`
    : `give the server more free memory (about ${memory.estimatedMb} MB for the build)`
  const half =
    halfPrecisionMb !== null && halfPrecisionMb <= memory.chosenMb
      ? `, or set index.precision: half (a graph of about ${halfPrecisionMb} MB, which fits)`
      : halfPrecisionMb !== null
        ? `, or set index.precision: half (about ${halfPrecisionMb} MB)`
        : ''
  return `the graph (~${memory.estimatedMb} MB) does not fit in maintenance_work_mem ${memory.chosenMb} MB (${memory.cappedBy}): the build goes on disk, several times slower; ${raise}${half}`
}
