import { z } from 'zod'
import { maySetRole, readWriterRoles } from '../../db/catalog/readApplicationSide.ts'
import type { Database } from '../../db/database.ts'
import type { RunnerSchema } from '../../db/runnerSchema/objects.ts'
import type { Target } from '../../db/target.ts'
import type { Plan } from '../../plan/schema.ts'
import { WorkError } from '../../errors.ts'
import { proveCaptureOnCopy } from './proveCapture.ts'

// The capture must work for whoever writes the table, and the application seldom writes as the
// table's owner: it is proved as each of the application's roles (the plan's
// target.application_roles, or every role with INSERT, UPDATE or DELETE on the table).

export const roleProofSchema = z.object({
  table: z.string(),
  role: z.string(),
  /** null: not proved, because the runner's role may not SET ROLE to it (detail says what to grant). */
  proved: z.boolean().nullable(),
  detail: z.string(),
})
export type RoleProof = z.infer<typeof roleProofSchema>

/** The roles the application writes this table as. */
export async function applicationRoles(db: Pick<Database, 'query'>, plan: Plan, t: Target): Promise<string[]> {
  return plan.target.application_roles ?? (await readWriterRoles(db as Database, t.table))
}

export async function proveAsApplicationRoles(db: Database, rs: RunnerSchema, plan: Plan, t: Target): Promise<RoleProof[]> {
  const proofs: RoleProof[] = []
  for (const role of await applicationRoles(db, plan, t)) {
    if (!(await maySetRole(db, role))) {
      const detail = `not proved as ${role}: the runner's role may not SET ROLE to it (GRANT ${role} TO the runner's role to let it prove the capture as the application writes)`
      proofs.push({ table: t.name, role, proved: null, detail })
      continue
    }
    const proof = await proveCaptureOnCopy(db, rs, t, role)
    proofs.push({ table: t.name, role, proved: proof.proved, detail: proof.detail })
  }
  return proofs
}

export function describeRoleProofs(proofs: RoleProof[]): string {
  if (proofs.length === 0) return 'no role other than the owner may write it'
  return proofs.map((p) => `${p.role}: ${p.proved === null ? 'not proved (may not SET ROLE)' : p.proved ? 'proved' : 'FAILED'}`).join(', ')
}

/**
 * installPipeline's beforeTriggers: the capture proved on a copy as each of the application's
 * roles before any trigger is on its table, so a capture that would refuse the application's
 * writes never reaches the application (the batch fails with the table untouched).
 */
export function requireCaptureForRoles(
  db: Database,
  rs: RunnerSchema,
  plan: Plan,
  log: (line: string) => void,
  into: RoleProof[],
): (t: Target) => Promise<void> {
  return async (t) => {
    const proofs = await proveAsApplicationRoles(db, rs, plan, t)
    into.push(...proofs)
    if (proofs.length) log(`  ${t.name}: the capture as the application's roles: ${describeRoleProofs(proofs)}`)
    const failed = proofs.filter((p) => p.proved === false)
    if (failed.length)
      throw new WorkError(
        `${t.name}: the capture would refuse the application's writes (${failed.map((p) => p.detail).join('; ')}); no trigger was created on it`,
      )
  }
}
