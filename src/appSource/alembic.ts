import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { execa } from 'execa'
import { findModelClasses } from './pythonModels.ts'
import { findInVirtualEnv, pythonString as python } from './python.ts'
import type { Plan } from '../plan/schema.ts'
import { WorkError } from '../errors.ts'
import type { AlembicAgreement, BuiltIndex } from '../steps/index/output.ts'

// After the index batch, the application's Alembic must agree with the database, or the next
// `alembic check` fails the team's CI and the next careless autogenerate drops the indexes
// (and, with include_schemas, the runner's tables). What each model needs is printed and
// reported; it is written into the application only when the plan asks (alembic.patch); the
// application's own `alembic check` then says whether they agree.

type AlembicPlan = NonNullable<Plan['target']['alembic']>

/** The application's alembic: the plan's command, else the virtual environment beside alembic.ini, else PATH's. */
export function alembicCommand(alembic: AlembicPlan): string {
  return alembic.command ?? findInVirtualEnv(dirname(resolve(alembic.ini)), 'alembic')?.path ?? 'alembic'
}

/** `alembic upgrade head` with the application's alembic, in alembic.ini's folder. */
export async function alembicUpgrade(alembic: AlembicPlan, log: (m: string) => void, what: string): Promise<void> {
  const ini = resolve(alembic.ini)
  const command = alembicCommand(alembic)
  log(`  applying ${what} with \`${command} upgrade head\``)
  const result = await execa(command, ['-c', ini, 'upgrade', 'head'], { cwd: dirname(ini), reject: false, all: true })
  if (result.exitCode !== 0) {
    throw new WorkError(
      `\`${command} upgrade head\` failed (exit ${result.exitCode}): ${(result.all ?? '').trim().split('\n').slice(-5).join(' | ')}`,
    )
  }
}

/** Index(...) for a plain-column HNSW index; undefined for an expression index (a cast), which the filter keeps out instead. */
function declaration(index: BuiltIndex, model: string): string | undefined {
  const plain = /USING hnsw \(("?)([^"\s()]+)\1 (\w+)\)/.exec(index.definition)
  if (!plain) return undefined
  const [, , column, opclass] = plain
  const options = Object.fromEntries([...index.definition.matchAll(/(m|ef_construction)='?(\d+)'?/g)].map((m) => [m[1]!, Number(m[2])]))
  const withOptions = Object.keys(options).length
    ? `, postgresql_with={${Object.entries(options)
        .map(([k, v]) => `${python(k)}: ${v}`)
        .join(', ')}}`
    : ''
  return `Index(${python(index.name)}, ${model}.__table__.c[${python(column!)}], postgresql_using="hnsw"${withOptions}, postgresql_ops={${python(column!)}: ${python(opclass!)}})`
}

export async function agreeWithAlembic(plan: Plan, indexes: BuiltIndex[], log: (m: string) => void): Promise<AlembicAgreement> {
  const alembic = plan.target.alembic!
  const ini = resolve(alembic.ini)
  const models = findModelClasses(resolve(plan.target.app_source ?? dirname(ini)))
  const declarations: AlembicAgreement['declarations'] = []
  const filtered: string[] = []
  for (const index of indexes.filter((i) => i.valid)) {
    const model = models.get(index.table.split('.').at(-1)!)
    const code = model ? declaration(index, model.className) : undefined
    if (!model || !code) filtered.push(index.name)
    declarations.push({
      table: index.table,
      index: index.name,
      model: model?.className ?? null,
      file: model?.file ?? null,
      code: code ?? null,
    })
  }
  const filter = envFilter(plan.target.runner_schema, filtered)
  log(
    `  for Alembic: in the models,\n${declarations.map((d) => `    ${d.code ?? `# ${d.index}: kept out by the filter (no model, or an expression index)`}`).join('\n')}`,
  )
  log(
    `  and in env.py, context.configure(..., include_name=runner_include_name${filtered.length ? ', include_object=runner_include_object' : ''}):\n${filter.replace(/^/gm, '    ')}`,
  )
  const patched = alembic.patch ? patchApplication(ini, declarations, filter, filtered.length > 0) : []
  return { declarations, env_filter: filter, patched, check: await runCheck(alembic, ini) }
}

function envFilter(runnerSchema: string, indexNames: string[]): string {
  const lines = [
    'def runner_include_name(name, type_, parent_names):',
    `    # runner: the schema ${python(runnerSchema)} is the runner's own, not the application's to migrate`,
    `    return not (type_ == "schema" and name == ${python(runnerSchema)})`,
  ]
  if (indexNames.length)
    lines.push(
      '',
      '',
      'def runner_include_object(obj, name, type_, reflected, compare_to):',
      '    # runner: its HNSW indexes that no model declares (expression indexes), left as they are',
      `    return not (type_ == "index" and name in {${indexNames.map(python).join(', ')}})`,
    )
  return `${lines.join('\n')}\n`
}

const MARK = '# runner:'

/** Appends the declarations to each model's file and the filter to env.py; returns the files changed. Idempotent. */
function patchApplication(
  ini: string,
  declarations: AlembicAgreement['declarations'],
  filter: string,
  withObjectFilter: boolean,
): string[] {
  const changed = new Set<string>()
  for (const d of declarations) {
    if (!d.code || !d.file) continue
    const text = readFileSync(d.file, 'utf8')
    if (text.includes(python(d.index))) continue
    const importLine = /^from sqlalchemy import .*\bIndex\b/m.test(text) ? '' : 'from sqlalchemy import Index  # noqa: E402\n\n'
    writeFileSync(
      d.file,
      `${text.trimEnd()}\n\n\n${MARK} the HNSW index it built, declared so that autogenerate and \`alembic check\` agree\n${importLine}${d.code}\n`,
    )
    changed.add(d.file)
  }
  const env = envPath(ini)
  if (env && existsSync(env)) {
    let text = readFileSync(env, 'utf8')
    if (!text.includes('runner_include_name') && !/include_name\s*=|include_object\s*=/.test(text) && /context\.configure\(/.test(text)) {
      const at = text.search(/^def /m)
      text = `${text.slice(0, at)}${filter}\n\n${text.slice(at)}`
      const args = `include_name=runner_include_name,${withObjectFilter ? ' include_object=runner_include_object,' : ''}`
      // On the line of the call, or on a line of its own with the arguments' indentation.
      text = text.replace(/context\.configure\((\s*)/g, (_, space: string) => `context.configure(${space}${args}${space || ' '}`)
      writeFileSync(env, text)
      changed.add(env)
    }
  }
  return [...changed]
}

/** env.py, from alembic.ini's script_location. */
function envPath(ini: string): string | undefined {
  const location = /^script_location\s*=\s*(.+)$/m.exec(readFileSync(ini, 'utf8'))?.[1]?.trim()
  return location ? join(dirname(ini), location.replace('%(here)s', dirname(ini)), 'env.py') : undefined
}

async function runCheck(alembic: AlembicPlan, ini: string): Promise<AlembicAgreement['check']> {
  if (!alembic.check) return null
  const command = alembicCommand(alembic)
  const result = await execa(command, ['-c', ini, 'check'], { cwd: dirname(ini), reject: false, all: true })
  const output = (result.all ?? '')
    .trim()
    .split('\n')
    .filter((l) => !/SAWarning|context\.run_migrations\(\)/.test(l))
    .slice(-3)
    .join(' | ')
  const unavailable = result.exitCode !== 0 && /invalid choice: 'check'|No such command/i.test(output)
  return { command: `${command} check`, exit_code: result.exitCode ?? -1, passed: result.exitCode === 0, unavailable, output }
}
