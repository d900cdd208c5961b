// Defence in depth: whatever reaches a session file or a log line passes through here, so a
// key or password that slipped into an error message (a driver quoting its connection string,
// an HTTP client echoing a header) is replaced before it is written.
//
// API keys are long random strings: replaced wherever they appear. A database password may be
// a plain word (the user postgres with the password postgres): it is replaced where a
// connection string carries it (user:password@, password=...), and elsewhere only when it
// looks like a secret, so that redaction never turns "postgres@host/postgres" into "***".

const KEY_ENV = ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY']
const URL_ENV = ['DATABASE_URL', 'TEST_DATABASE_URL']

/** Database passwords, except one that is its own user's name: that one is printed as the user anyway. */
function databasePasswords(): string[] {
  const found: string[] = []
  if (process.env.PGPASSWORD && process.env.PGPASSWORD !== process.env.PGUSER) found.push(process.env.PGPASSWORD)
  for (const name of URL_ENV) {
    const value = process.env[name]
    if (!value) continue
    try {
      const url = new URL(value)
      if (url.password && url.password !== url.username) found.push(decodeURIComponent(url.password), url.password)
    } catch {}
  }
  return found
}

/** A password worth replacing even outside a connection string: long, and not a plain word. */
const looksSecret = (value: string) => value.length >= 8 && /[^A-Za-z]/.test(value)
const escapeRegExp = (value: string) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export function redactSecrets(text: string): string {
  let result = text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]+:)[^@\s]+@/g, '$1***@')
  for (const key of KEY_ENV.map((name) => process.env[name]).filter((v): v is string => Boolean(v && v.length >= 8))) {
    result = result.split(key).join('***')
  }
  for (const password of databasePasswords()) {
    result = result.replace(new RegExp(`(password\\s*=\\s*['"]?)${escapeRegExp(password)}`, 'gi'), '$1***')
    if (looksSecret(password)) result = result.split(password).join('***')
  }
  return result
}
