import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real databases and child processes: the embedded database alone takes ~3 s to open.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
})
