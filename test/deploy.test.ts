import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { execa } from 'execa'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../src/db/database.ts'
import { createApp, planFor, shapeOf } from './helpers/appSchemas.ts'
import { createServerDatabase, serverUrl, tempDir, type TestTarget } from './helpers/databases.ts'
import { writePlan } from './helpers/plans.ts'
import { runCli } from './helpers/runCli.ts'
import { waitFor as until } from './helpers/waitFor.ts'

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

  it('the compose example mounts the plan and the data folder where the image reads and writes them', () => {
    const image = imageFacts()
    const compose = parse(read('deploy/compose.yaml'))
    const volumes: string[] = compose.services['runner-worker'].volumes
    expect(volumes).toContain(`./plans/feature-1.yaml:${image.command[1]}:ro`)
    expect(volumes).toContain(`runner-data:${image.owned[0]}`)
    expect(compose.services['runner-worker'].environment).toBeUndefined() // secrets only from its env_file
  })

  it('the unit reads its secrets from an environment file, never from itself', () => {
    const unit = read('deploy/runner-worker.service')
    expect(unit).toMatch(/^EnvironmentFile=/m)
    expect(unit).not.toMatch(/DATABASE_URL=|OPENAI_API_KEY=/)
    expect(read('deploy/worker.env.example')).toMatch(/^DATABASE_URL=.*\nOPENAI_API_KEY=/m)
  })
})

/** What the Containerfile says about the running container: its user, its environment, its command, the folders it gives that user. */
function imageFacts() {
  const text = read('deploy/Containerfile')
  const runtime = text.slice(text.lastIndexOf('\nFROM ')) // the last stage is the image
  const env = Object.fromEntries([...runtime.matchAll(/^ENV (\S+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]))
  return {
    user: /^USER (\S+)$/m.exec(runtime)?.[1],
    workdir: /^WORKDIR (\S+)$/m.exec(runtime)?.[1],
    env,
    command: argumentsIn('deploy/Containerfile'),
    owned: [...runtime.matchAll(/chown -R \S+ (\S+)/g)].map((m) => m[1]!),
    volumes: [...runtime.matchAll(/^VOLUME (\S+)$/gm)].map((m) => m[1]!),
  }
}

describe.skipIf(!serverUrl)("the image's command, run as the image's user (real server)", () => {
  // No container engine here: the image's filesystem is laid out under a temporary root (its
  // absolute paths moved there), the runner itself is this checkout (root's, not writable by
  // the user, as /app is in the image), and the command runs as an unprivileged uid.
  let target: TestTarget
  let db: Database
  let worker: ReturnType<typeof execa> | undefined
  const shape = shapeOf({ rows: 3 })
  beforeAll(async () => {
    target = await createServerDatabase()
    db = await target.open()
  })
  afterAll(async () => {
    worker?.kill('SIGKILL')
    await db?.close()
    await target?.drop()
  })

  it('runs as a non-root user, writes only its own folder, reads the plan from the mounted path, and POST /embed gives the column its own vectors', async () => {
    const image = imageFacts()
    expect(image.user).toBe('node')
    expect(image.env.RUNNER_CACHE_DIR?.startsWith(image.owned[0]!)).toBe(true)
    expect(image.volumes).toEqual(image.owned)
    const planInImage = image.command[1]!
    expect(planInImage).toMatch(/^\/etc\/runner\//)
    expect(read('README.md')).toContain(planInImage) // documented where the plan is mounted

    const fsRoot = tempDir()
    chmodSync(fsRoot, 0o755)
    const inImage = (path: string) => (path.startsWith('/') ? join(fsRoot, path) : path)
    const nobody = 65534
    for (const dir of image.owned) {
      mkdirSync(inImage(dir), { recursive: true })
      chownSync(inImage(dir), nobody, nobody)
    }
    await createApp(db, shape)
    const plan = planFor(shape, { embedding: { provider: 'local' }, worker: { poll_ms: 100 } }) as any
    plan.batches = plan.batches
      .filter((b: any) => ['diagnose', 'pipeline'].includes(b.step))
      .map((b: any) => ({ ...b, depends_on: b.step === 'pipeline' ? ['diagnose'] : [] }))
    mkdirSync(dirname(inImage(planInImage)), { recursive: true })
    writePlan(dirname(inImage(planInImage)), plan, basename(planInImage))
    const installed = await runCli(['start', inImage(planInImage), '--sessions-dir', join(tempDir(), 's')], {
      env: { DATABASE_URL: target.url! },
    })
    expect(installed.exitCode, installed.all).toBe(0)

    const args = image.command.map(inImage).map((a) => (a === '9464' ? '0' : a))
    const env = Object.fromEntries(Object.entries(image.env).map(([k, v]) => [k, inImage(v)]))
    worker = execa('setpriv', ['--reuid', String(nobody), '--regid', String(nobody), '--clear-groups', 'node', 'bin/runner.js', ...args], {
      cwd: root,
      env: { ...env, RUNNER_HTTP_HOST: '127.0.0.1', DATABASE_URL: target.url!, HOME: '/nonexistent' },
      extendEnv: false,
      reject: false,
      all: true,
    })
    let logged = ''
    worker.all!.on('data', (chunk: Buffer) => {
      logged += chunk.toString()
    })
    const base = await until('the HTTP port in the log', async () => /on (http:\/\/127\.0\.0\.1:\d+)/.exec(logged)?.[1], 60_000)
    await db.exec(`INSERT INTO docs (body) VALUES ('the queue worker embeds new rows')`)
    await until(
      'the new row embedded by the worker',
      async () =>
        (await db.query(`SELECT 1 FROM docs WHERE body = 'the queue worker embeds new rows' AND embedding IS NOT NULL`)).rows.length === 1,
      60_000,
    )
    expect(logged).not.toMatch(/EACCES|unexpected error/)
    const cache = readdirSync(inImage(image.env.RUNNER_CACHE_DIR!))
    expect(cache.length).toBeGreaterThan(0) // the cache went where the image gives the user a folder
    expect(statSync(join(inImage(image.env.RUNNER_CACHE_DIR!), cache[0]!)).uid).toBe(nobody)

    const post = (body: unknown, path = '/embed') =>
      fetch(`${base}${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) })
    const answer = await post({ input: 'the queue worker embeds new rows' })
    expect(answer.status).toBe(200)
    const embedded = (await answer.json()) as any
    const [stored] = (
      await db.query<{ v: string }>(`SELECT embedding::text AS v FROM docs WHERE body = 'the queue worker embeds new rows'`)
    ).rows
    const column = JSON.parse(stored!.v) as number[]
    const vector = embedded.data[0].embedding as number[]
    expect(vector).toHaveLength(column.length)
    expect(Math.max(...vector.map((x, i) => Math.abs(x - column[i]!)))).toBeLessThan(1e-6) // the column's own space
    expect(embedded.runner).toEqual({ provider: 'local', model: embedded.model, dimensions: column.length })
    // OpenAI's path and request shape, as an OpenAI client pointed at the worker sends them.
    expect(((await (await post({ input: ['a', 'b'], model: embedded.model }, '/v1/embeddings')).json()) as any).data).toHaveLength(2)
    const wrongModel = await post({ input: 'x', model: 'text-embedding-3-small' })
    expect(wrongModel.status).toBe(400)
    expect(((await wrongModel.json()) as any).error.message).toContain(`this worker embeds with ${embedded.model}`)
    expect((await post('not json')).status).toBe(400)
    expect((await post({ input: [] })).status).toBe(400)
  })
})
