// Errors that carry their exit code. Commands only throw; src/cli/main.ts is the one place
// that catches, prints a clean message and exits. Anything else is a bug and prints its stack.

export class RunnerError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message)
    this.name = new.target.name
  }
}

/** The user's input (arguments, plan file, environment) is wrong: exit 2. */
export class UsageError extends RunnerError {
  constructor(message: string) {
    super(message, 2)
  }
}

/** The work could not be done (database refused, batch failed): exit 1. */
export class WorkError extends RunnerError {
  constructor(message: string) {
    super(message, 1)
  }
}

/** SIGINT or SIGTERM arrived; the current unit of work finished and the checkpoint is written. */
export class Interrupted extends RunnerError {
  constructor(signal = 'SIGINT') {
    super(`interrupted by ${signal}; the checkpoint is saved, run \`runner resume\` to continue`, 130)
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
