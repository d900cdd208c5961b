import { totalmem } from 'node:os'
import { z } from 'zod'
import { readSettingBytes, serverIsLocal } from '../../db/catalog/readSettings.ts'
import type { Database, Queryable } from '../../db/database.ts'
import { withSettings } from '../../db/withSettings.ts'
import { percentiles, type SearchSetting } from './measureSearch.ts'

// When memory, not the index, sets the latency. An HNSW search walks a few hundred pages of
// the graph; held in shared_buffers they cost microseconds, read from the OS cache tens of
// them, from disk milliseconds each. So the indexes' size is compared with what the server
// gives them (shared_buffers), what the planner is told the OS caches (effective_cache_size)
// and the machine's memory where it can be read (a server on this machine), and the nearest-10
// query is run under EXPLAIN (ANALYZE, BUFFERS) before any warm-up and again warm: where its
// pages came from is the evidence. The runner recommends settings; it never changes them.

export const memorySettingsSchema = z.object({
  shared_buffers_bytes: z.number(),
  effective_cache_size_bytes: z.number(),
  /** The machine's memory, when the server runs on the runner's machine; null otherwise (not readable from SQL). */
  machine_bytes: z.number().nullable(),
})
export type MemorySettings = z.infer<typeof memorySettingsSchema>

export async function readMemorySettings(db: Queryable): Promise<MemorySettings> {
  return {
    shared_buffers_bytes: await readSettingBytes(db, 'shared_buffers'),
    effective_cache_size_bytes: await readSettingBytes(db, 'effective_cache_size'),
    machine_bytes: (await serverIsLocal(db)) ? totalmem() : null,
  }
}

export const bufferPassSchema = z.object({
  queries: z.number().int(),
  p50_ms: z.number(),
  p95_ms: z.number(),
  /** Pages per query found in shared_buffers, and read from outside (the OS cache or the disk). */
  hit_blocks: z.number(),
  read_blocks: z.number(),
})
export type BufferPass = z.infer<typeof bufferPassSchema>

interface ExplainNode {
  'Shared Hit Blocks'?: number
  'Shared Read Blocks'?: number
}

/** One pass of a query over these vectors, each under EXPLAIN (ANALYZE, BUFFERS): server-side time and where its pages came from. */
export async function bufferPass(
  db: Database,
  sql: string,
  params: (vector: string) => unknown[],
  vectors: string[],
  setting: SearchSetting,
): Promise<BufferPass> {
  const settings = {
    'hnsw.ef_search': setting.ef_search,
    ...(setting.iterative_scan !== 'off' ? { 'hnsw.iterative_scan': setting.iterative_scan } : {}),
  }
  return withSettings(db, settings, async (session) => {
    const ms: number[] = []
    let hit = 0
    let read = 0
    for (const vector of vectors) {
      const { rows } = await session.query<{ 'QUERY PLAN': [{ Plan: ExplainNode; 'Execution Time': number }] }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`,
        params(vector),
      )
      const [root] = rows[0]!['QUERY PLAN']
      ms.push(root['Execution Time'])
      hit += root.Plan['Shared Hit Blocks'] ?? 0
      read += root.Plan['Shared Read Blocks'] ?? 0
    }
    const p = percentiles(ms)
    const n = Math.max(1, vectors.length)
    return { queries: vectors.length, p50_ms: p.p50, p95_ms: p.p95, hit_blocks: hit / n, read_blocks: read / n }
  })
}

const size = (bytes: number) =>
  bytes >= 1024 ** 3
    ? `${(bytes / 1024 ** 3).toFixed(1)} GB`
    : bytes >= 1024 ** 2
      ? `${Math.round(bytes / 1024 ** 2)} MB`
      : `${Math.round(bytes / 1024)} kB`
const pass = (p: BufferPass) =>
  `p95 ${p.p95_ms.toFixed(2)} ms, ${p.read_blocks.toFixed(0)} of ${(p.hit_blocks + p.read_blocks).toFixed(0)} pages a query read from outside shared_buffers`

/**
 * The settings to recommend for vector indexes of this total size, each with the figure it
 * moves: the measured first-pass and warm passes where there are any. Empty when memory does
 * not set the latency.
 */
export function adviseMemory(settings: MemorySettings, indexBytes: number, passes?: { first: BufferPass; warm: BufferPass }): string[] {
  if (indexBytes <= 0) return []
  const advice: string[] = []
  const measured = passes ? ` Measured on the nearest-10 query: before any warm-up ${pass(passes.first)}; warm ${pass(passes.warm)}.` : ''
  const machine = settings.machine_bytes
  if (machine !== null && indexBytes > machine / 2) {
    advice.push(
      `The vector indexes (${size(indexBytes)}) are more than half of this machine's memory (${size(machine)}): they cannot stay in memory beside the tables, and each search reads pages from disk. Index at half precision (index.precision: half, half the size) or binary (index.precision: binary, a 32nd, re-ranked), or give the server more memory.${measured}`,
    )
  }
  if (indexBytes > settings.shared_buffers_bytes) {
    // Not past a quarter of the machine's memory, PostgreSQL's own rule of thumb, unless the index needs it.
    const wanted = indexBytes * 1.25
    const cap = machine !== null ? ` (this machine has ${size(machine)}; PostgreSQL's guidance is about a quarter of it)` : ''
    advice.push(
      `shared_buffers (${size(settings.shared_buffers_bytes)}) is smaller than the vector indexes (${size(indexBytes)}): warm or not, searches read index pages from outside it. Recommended: shared_buffers = ${size(wanted)} or more${cap}, which needs a server restart; it moves the pages read from outside shared_buffers toward 0 and the p95 toward the warm one.${measured}`,
    )
  }
  if (indexBytes > settings.effective_cache_size_bytes) {
    advice.push(
      `effective_cache_size (${size(settings.effective_cache_size_bytes)}) tells the planner less memory caches the data than the vector indexes take (${size(indexBytes)}): it prices index scans as disk reads and can prefer a sequential scan. Recommended: effective_cache_size = ${size(Math.max(indexBytes * 1.25, (machine ?? 0) * 0.75))} or more (about three quarters of the machine's memory; no restart, a reload).`,
    )
  }
  if (!advice.length && passes && passes.warm.read_blocks > 0.5) {
    advice.push(
      `The indexes fit in shared_buffers, yet warm searches still read pages from outside it: other tables compete for it.${measured}`,
    )
  }
  return advice
}

/** The report's "Memory" section, for diagnose (with the indexes still to build) and validate alike. */
export function renderMemory(m: { settings: MemorySettings; indexes_bytes: number; planned_bytes?: number; advice: string[] }): string[] {
  const planned = m.planned_bytes ? ` (and about ${size(m.planned_bytes)} for the indexes the plan would build)` : ''
  const machine = m.settings.machine_bytes === null ? 'not readable (the server is on another host)' : size(m.settings.machine_bytes)
  return [
    '## Memory',
    '',
    `The vector indexes of the target columns take ${size(m.indexes_bytes)}${planned}; shared_buffers ${size(m.settings.shared_buffers_bytes)}, effective_cache_size ${size(m.settings.effective_cache_size_bytes)}, the machine's memory ${machine}. The runner recommends settings and never changes them.`,
    '',
    ...(m.advice.length
      ? m.advice.map((a) => `- ${a}`)
      : ['- Memory does not set the latency here: the indexes fit in what the server gives them.']),
    '',
  ]
}
