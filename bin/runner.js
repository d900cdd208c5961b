#!/usr/bin/env node
// The compiled CLI (`npm run build`, which `npm install` runs through `prepare`): no TypeScript
// compiler at run time. A package installed from the registry or a tarball ships dist/ built.
import { existsSync } from 'node:fs'

const entry = new URL('../dist/cli/bin.js', import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write('runner: not built yet: run `npm run build` in the runner folder (`npm install` runs it)\n')
  process.exit(2)
}
await import(entry.href)
