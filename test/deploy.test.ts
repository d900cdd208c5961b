import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from './helpers/runCli.ts'

// The deployment files name only commands, flags and files that exist: a unit or an image that
// starts a worker with a typo would fail only in production.

const root = join(import.meta.dirname, '..')
const read = (file: string) => readFileSync(join(root, file), 'utf8')

/** The runner's arguments as the file gives them: after bin/runner.js in ExecStart, from CMD in the Containerfile. */
function argumentsIn(file: string): string[] {
  const text = read(file)
  const exec = /^ExecStart=\S+ \S*bin\/runner\.js (.+)$/m.exec(text)
  if (exec) return exec[1]!.split(/\s+/)
  const cmd = /^CMD (\[.+\])$/m.exec(text)
  if (cmd) return JSON.parse(cmd[1]!)
  throw new Error(`${file} starts no runner command`)
}

describe('deploy/', () => {
  it.each(['deploy/runner-worker.service', 'deploy/Containerfile'])('%s starts `runner worker` with flags it has', async (file) => {
    const args = argumentsIn(file)
    expect(args[0]).toBe('worker')
    const help = await runCli(['worker', '--help'])
    expect(help.exitCode).toBe(0)
    for (const flag of args.filter((a) => a.startsWith('--'))) expect(help.stdout, `${file}: ${flag}`).toContain(flag)
    // Each value a flag takes is one it accepts.
    expect(args[args.indexOf('--log-format') + 1]).toMatch(/^(text|json)$/)
    expect(Number(args[args.indexOf('--http-port') + 1])).toBeGreaterThan(0)
  })

  it('the container copies what the bin needs, and its entrypoint is the bin itself', () => {
    const text = read('deploy/Containerfile')
    // What is copied from the build context exists (a COPY --from takes the build stage's output).
    const copied = [...text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '))
    expect(copied).toEqual(expect.arrayContaining(['bin', 'plans', 'src', 'tsconfig.build.json']))
    for (const path of copied) expect(existsSync(join(root, path)), path).toBe(true)
    // The image runs the compiled CLI: the build stage's dist/, what bin/runner.js loads.
    expect(text).toContain('COPY --from=build /src/dist ./dist')
    expect(read('bin/runner.js')).toContain('../dist/cli/bin.js')
    expect(text).toContain('ENTRYPOINT ["node", "bin/runner.js"]')
    expect(existsSync(join(root, 'plans/feature-1.yaml'))).toBe(true)
  })

  it('the unit reads its secrets from an environment file, never from itself', () => {
    const unit = read('deploy/runner-worker.service')
    expect(unit).toMatch(/^EnvironmentFile=/m)
    expect(unit).not.toMatch(/DATABASE_URL=|OPENAI_API_KEY=/)
    expect(read('deploy/worker.env.example')).toMatch(/^DATABASE_URL=.*\nOPENAI_API_KEY=/m)
  })
})
