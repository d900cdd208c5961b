import { versionBelow } from '../../db/catalog/readExtension.ts'

// Parallel maintenance workers speed an HNSW build up where the machine has cores to spare,
// but pgvector before 0.8.2 has a buffer overflow in parallel HNSW builds (CVE-2026-3172):
// there the runner builds with none, whatever the plan or the server says, and says why.

export const PARALLEL_BUILD_FIXED_IN = '0.8.2'

export function chooseParallelWorkers(
  pgvectorVersion: string | null,
  planned: number | undefined,
): { workers: number | undefined; note: string | null } {
  if (pgvectorVersion !== null && versionBelow(pgvectorVersion, PARALLEL_BUILD_FIXED_IN)) {
    return {
      workers: 0,
      note: `built without parallel workers: pgvector ${pgvectorVersion} has the buffer overflow in parallel HNSW builds fixed in ${PARALLEL_BUILD_FIXED_IN} (CVE-2026-3172)${planned ? ` (index.parallel_workers: ${planned} not applied)` : ''}; upgrade pgvector to build in parallel`,
    }
  }
  return { workers: planned, note: null }
}
