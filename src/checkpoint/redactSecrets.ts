// Defence in depth: whatever reaches a session file or a log line passes through here, so a
// key or password that slipped into an error message (a driver quoting its connection string,
// an HTTP client echoing a header) is replaced before it is written.

const SECRET_ENV = ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'PGPASSWORD']
const URL_ENV = ['DATABASE_URL', 'TEST_DATABASE_URL']

function secrets(): string[] {
  const found: string[] = []
  for (const name of SECRET_ENV) {
    const value = process.env[name]
    if (value && value.length >= 4) found.push(value)
  }
  for (const name of URL_ENV) {
    const value = process.env[name]
    if (!value) continue
    try {
      const password = decodeURIComponent(new URL(value).password)
      if (password.length >= 1) found.push(password, new URL(value).password)
    } catch {}
  }
  return found
}

export function redactSecrets(text: string): string {
  let result = text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/g, '$1***@')
  for (const secret of secrets()) result = result.split(secret).join('***')
  return result
}
