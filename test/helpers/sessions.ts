import { readdirSync } from 'node:fs'

/** The session folders under a sessions root, oldest first (the root's own .gitignore is not one). */
export const sessionFolders = (root: string): string[] =>
  readdirSync(root)
    .filter((name) => !name.startsWith('.'))
    .sort()
