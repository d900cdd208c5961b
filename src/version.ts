import { readFileSync } from 'node:fs'

/** This runner's version, from its package.json: workers register with it. */
export const RUNNER_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version
