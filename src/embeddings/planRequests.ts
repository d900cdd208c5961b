// Splits inputs into embedding requests within the API's limits per request: at most 2,048
// inputs and 300,000 tokens summed (and the plan's batch size, if smaller).

export const MAX_INPUTS_PER_REQUEST = 2048
export const MAX_TOKENS_PER_REQUEST = 300_000
export const MAX_TOKENS_PER_INPUT = 8191

export function planRequests(tokenCounts: number[], maxInputs = MAX_INPUTS_PER_REQUEST, maxTokens = MAX_TOKENS_PER_REQUEST): number[][] {
  const requests: number[][] = []
  let current: number[] = []
  let tokens = 0
  tokenCounts.forEach((count, index) => {
    if (current.length > 0 && (current.length >= maxInputs || tokens + count > maxTokens)) {
      requests.push(current)
      current = []
      tokens = 0
    }
    current.push(index)
    tokens += count
  })
  if (current.length > 0) requests.push(current)
  return requests
}
