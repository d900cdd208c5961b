// Names of what the runner creates in a target database, all inside the plan's runner_schema
// so they are easy to find and to remove.

export const QUEUE_TABLE = 'embedding_queue'
export const FAILED_TABLE = 'embedding_failures'
/** application_name of `runner worker` connections: the diagnosis looks for them in pg_stat_activity. */
export const WORKER_APPLICATION_NAME = 'runner worker'
