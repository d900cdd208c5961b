import { defineConfig } from 'vitest/config'

// Two projects, run one after the other by `npm test`: the main suite (test files in
// parallel, each with databases of its own), then the tests that restart the shared
// PostgreSQL server, which must have the server to themselves.
const shared = {
  // Real databases and child processes: the embedded database alone takes seconds to open.
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: 'forks' as const,
  globalSetup: ['test/globalSetup.ts'],
}

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/serial/**'] } },
      { test: { ...shared, name: 'serial', include: ['test/serial/**/*.test.ts'], fileParallelism: false } },
    ],
  },
})
