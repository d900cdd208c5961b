import { execa } from 'execa'

/** The middle value (the upper of the two middle ones for an even count). */
export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Wall seconds and peak RSS (MB) of one whole process, from GNU time's %e and %M. */
export async function measureProcess(command: string[], env: Record<string, string>, cwd: string): Promise<{ s: number; mb: number }> {
  const result = await execa('/usr/bin/time', ['-f', '%e %M', ...command], { cwd, env, reject: false })
  if (result.exitCode !== 0) throw new Error(`${command.join(' ')} failed (exit ${result.exitCode}): ${result.stderr.slice(-400)}`)
  const [seconds, kb] = result.stderr.trim().split('\n').at(-1)!.split(' ').map(Number)
  return { s: seconds!, mb: kb! / 1024 }
}
