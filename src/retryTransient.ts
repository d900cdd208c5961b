import { setTimeout as sleep } from 'node:timers/promises'
import { errorMessage, isTransient } from './errors.ts'

// The one retry policy for transient failures (a dropped connection, a restarting server, a
// lost serialization race), shared by the coordinator's batches, the worker's loop and the
// LISTEN connection: capped, jittered exponential backoff. Permanent failures are thrown at once.

/** Full jitter over half the window: base·2^retry capped, then between 50% and 100% of it. */
export function backoffMs(retry: number, baseMs = 1000, capMs = 16_000, random = Math.random): number {
  const window = Math.min(capMs, baseMs * 2 ** retry)
  return Math.round(window * (0.5 + random() / 2))
}

export interface RetryOptions {
  /** What is retried, for the log line: "batch index", "the worker's claim". */
  what: string
  log(message: string): void
  signal?: AbortSignal
  /** What happens next, for the log line: "running it again from its checkpoint". */
  again?: string
  /** Retries after the first try; Infinity for a service that waits out any outage. */
  maxRetries?: number
  baseMs?: number
  capMs?: number
  onRetry?(error: unknown, retry: number): void
}

export async function retryTransient<T>(work: () => Promise<T>, options: RetryOptions): Promise<T> {
  const maxRetries = options.maxRetries ?? 5
  for (let retry = 0; ; retry++) {
    try {
      return await work()
    } catch (error) {
      if (!isTransient(error) || retry >= maxRetries || options.signal?.aborted) throw error
      const waitMs = backoffMs(retry, options.baseMs, options.capMs)
      const of = Number.isFinite(maxRetries) ? ` of ${maxRetries}` : ''
      options.log(
        `${options.what}: transient database error (${errorMessage(error)}); ${options.again ?? 'trying again'} in ${(waitMs / 1000).toFixed(1)} s (retry ${retry + 1}${of})`,
      )
      options.onRetry?.(error, retry + 1)
      await sleep(waitMs, undefined, { signal: options.signal }).catch(() => {})
    }
  }
}
