import { setTimeout as sleep } from 'node:timers/promises'

// One budget of requests and tokens per minute, shared by every concurrent request, so the
// runner slows itself down before the server has to refuse. Configured limits fill it; the
// server's x-ratelimit-* headers correct it (the server knows what other clients spent).

interface Bucket {
  limit: number
  available: number
}

function parseDuration(text: string | null): number | undefined {
  if (!text) return undefined
  // "1s", "6m0s", "20ms", "1.5s"
  let ms = 0
  let matched = false
  for (const [, value, unit] of text.matchAll(/([\d.]+)(ms|s|m|h)/g)) {
    matched = true
    ms += Number(value) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h']
  }
  return matched ? ms : undefined
}

export class RateBudget {
  private requests?: Bucket
  private tokens?: Bucket
  private last = Date.now()
  private pausedUntil = 0

  constructor(limits: { requestsPerMinute?: number; tokensPerMinute?: number } = {}) {
    if (limits.requestsPerMinute) this.requests = { limit: limits.requestsPerMinute, available: limits.requestsPerMinute }
    if (limits.tokensPerMinute) this.tokens = { limit: limits.tokensPerMinute, available: limits.tokensPerMinute }
  }

  private refill() {
    const now = Date.now()
    const minutes = (now - this.last) / 60_000
    this.last = now
    for (const bucket of [this.requests, this.tokens]) {
      if (bucket) bucket.available = Math.min(bucket.limit, bucket.available + bucket.limit * minutes)
    }
  }

  /** Waits until one request of this many tokens fits the budget, then spends it. */
  async acquire(tokens: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      this.refill()
      const pause = this.pausedUntil - Date.now()
      const needRequests = this.requests && this.requests.available < 1 ? ((1 - this.requests.available) / this.requests.limit) * 60_000 : 0
      const wanted = this.tokens ? Math.min(tokens, this.tokens.limit) : 0
      const needTokens = this.tokens && this.tokens.available < wanted ? ((wanted - this.tokens.available) / this.tokens.limit) * 60_000 : 0
      const wait = Math.max(pause, needRequests, needTokens)
      if (wait <= 0) break
      await sleep(Math.min(wait, 1000), undefined, { signal })
    }
    if (this.requests) this.requests.available -= 1
    if (this.tokens) this.tokens.available -= tokens
  }

  /** Takes the server's word for what is left (x-ratelimit-remaining-*) and when it resets. */
  update(headers: Headers): void {
    this.refill()
    for (const [kind, bucket] of [
      ['requests', this.requests],
      ['tokens', this.tokens],
    ] as const) {
      const limit = Number(headers.get(`x-ratelimit-limit-${kind}`))
      const remaining = Number(headers.get(`x-ratelimit-remaining-${kind}`))
      if (!Number.isFinite(limit) || limit <= 0 || headers.get(`x-ratelimit-remaining-${kind}`) === null) continue
      const target = bucket ?? { limit, available: limit }
      target.limit = limit
      target.available = Math.min(target.available, remaining)
      if (kind === 'requests') this.requests = target
      else this.tokens = target
      const reset = parseDuration(headers.get(`x-ratelimit-reset-${kind}`))
      if (remaining <= 0 && reset) this.pause(reset)
    }
  }

  /** The server said to wait (429 with retry-after): nobody sends until then. */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + ms)
  }
}
