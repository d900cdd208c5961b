import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { LineCounter, parseDocument } from 'yaml'
import type { z } from 'zod'
import { UsageError } from '../errors.ts'
import { orderBatches } from './orderBatches.ts'
import { planSchema, type Plan } from './schema.ts'

export interface LoadedPlan {
  plan: Plan
  path: string
  sha256: string
}

/** batches[2].depends_on[0] */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i === 0 ? '' : '.'}${String(part)}`)).join('')
}

function describeIssue(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code === 'unrecognized_keys') {
    return { path: [...issue.path, issue.keys[0]!], message: `unknown key${issue.keys.length > 1 ? `s ${issue.keys.join(', ')}` : ''}` }
  }
  return { path: [...issue.path], message: issue.message }
}

/** Reads, parses and validates a plan. Every problem is a UsageError naming the file, the line and the path. */
export function loadPlan(path: string): LoadedPlan {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new UsageError(`${path}: cannot read the plan (${code === 'ENOENT' ? 'no such file' : code})`)
  }
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!
    const line = first.linePos?.[0]?.line
    throw new UsageError(`${path}${line ? `:${line}` : ''}: not valid YAML: ${first.message.split('\n')[0]}`)
  }
  const lineOf = (p: readonly PropertyKey[]): string => {
    for (let n = p.length; n >= 0; n--) {
      const node = doc.getIn(p.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined
      if (node?.range) return `:${lineCounter.linePos(node.range[0]).line}`
    }
    return ''
  }
  const parsed = planSchema.safeParse(doc.toJS())
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const { path: p, message } = describeIssue(issue)
      return `  ${path}${lineOf(p)}: ${formatPath(p) || '(top level)'}: ${message}`
    })
    throw new UsageError(`the plan is not valid:\n${lines.join('\n')}`)
  }
  try {
    orderBatches(parsed.data.batches)
  } catch (error) {
    throw new UsageError(`${path}: ${(error as Error).message}`)
  }
  return { plan: parsed.data, path, sha256: createHash('sha256').update(text).digest('hex') }
}
