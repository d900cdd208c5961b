// Every embedding the runner writes comes through this one small interface.

export interface EmbeddingFailure {
  /** Index into the texts passed to embed. */
  index: number
  reason: string
}

/**
 * An embedding. A remote provider's answer arrives as float32 bytes and stays in them (views
 * over one buffer per answer): as 1,536 doubles a vector it was most of a backfill's garbage.
 */
export type Vector = Float32Array | number[]

export interface EmbedResult {
  /** One vector per text, in order; null where that text failed (see failures). */
  vectors: (Vector | null)[]
  failures: EmbeddingFailure[]
}

export interface EmbeddingProvider {
  readonly name: 'openai' | 'local'
  readonly model: string
  readonly dimensions: number
  /**
   * Whether embedding a text again costs nothing but this machine's time and gives the same
   * vector (the local provider). The backfill saves a paid provider's batches before asking
   * for the next, so that a crash pays for at most one again; a free one's it does not save.
   */
  readonly freeToRepeat: boolean
  embed(texts: string[], signal?: AbortSignal): Promise<EmbedResult>
  /** One small request before any work: the key works and the dimension is the column's. */
  probe(): Promise<void>
  /** Tokens and price for these texts, before large work. */
  estimateCost(texts: string[]): { tokens: number; usd: number; tokenizer: string }
}
