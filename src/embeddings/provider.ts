// Every embedding the runner writes comes through this one small interface.

export interface EmbeddingFailure {
  /** Index into the texts passed to embed. */
  index: number
  reason: string
}

export interface EmbedResult {
  /** One vector per text, in order; null where that text failed (see failures). */
  vectors: (number[] | null)[]
  failures: EmbeddingFailure[]
}

export interface EmbeddingProvider {
  readonly name: 'openai' | 'local'
  readonly model: string
  readonly dimensions: number
  embed(texts: string[], signal?: AbortSignal): Promise<EmbedResult>
  /** One small request before any work: the key works and the dimension is the column's. */
  probe(): Promise<void>
  /** Tokens and price for these texts, before large work. */
  estimateCost(texts: string[]): { tokens: number; usd: number; tokenizer: string }
}
