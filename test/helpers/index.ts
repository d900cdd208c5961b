export { tempDir } from './databases.ts'
export { writePlan } from './plans.ts'
