import { main } from './main.ts'

// The command line's entry: compiled to dist/cli/bin.js, which bin/runner.js runs.
process.exitCode = await main(process.argv.slice(2))
