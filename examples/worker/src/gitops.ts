import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { randomUUID } from 'node:crypto'

/** Commits are made by this identity; the example needs no git configuration of its own. */
const IDENTITY = {
  GIT_AUTHOR_NAME: 'Loom example worker',
  GIT_AUTHOR_EMAIL: 'worker@loom.invalid',
  GIT_COMMITTER_NAME: 'Loom example worker',
  GIT_COMMITTER_EMAIL: 'worker@loom.invalid',
}

export const MAIN = 'main'

/** Runs git in `cwd`; resolves with stdout, rejects with stderr. `okCodes` lists exit codes that are answers, not failures. */
function git(cwd: string, args: string[], options: { input?: string; env?: Record<string, string>; okCodes?: number[] } = {}) {
  return new Promise<{ stdout: string; code: number }>((resolve, reject) => {
    const child = spawn('git', args, {
      cwd,
      env: { ...process.env, ...IDENTITY, GIT_TERMINAL_PROMPT: '0', ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr!.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8')
      if (code === 0 || (code !== null && options.okCodes?.includes(code))) resolve({ stdout, code: code ?? 0 })
      else reject(new Error(`git ${args[0]} failed (${code}): ${Buffer.concat(err).toString('utf8').trim()}`))
    })
    if (child.stdin) {
      // git may exit before reading all of its input; its exit code says what happened, not EPIPE.
      child.stdin.on('error', () => {})
      child.stdin.end(options.input)
    }
  })
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
}

/**
 * A bare git repository standing in for a GitOps repository on a forge. A "pull request"
 * is a branch: `commit` puts changes on a branch without touching `main`, `merge` merges it
 * into `main`, and `close` deletes it unmerged. Everything goes through git plumbing with a
 * private index per call, so changes on different branches never interfere.
 */
export interface GitOpsRepo {
  /** The bare repository's directory. */
  readonly dir: string
  /** A file at `ref` (default `main`), or undefined when it does not exist there. */
  read(path: string, ref?: string): Promise<string | undefined>
  /** Every file path at `ref` under `prefix`. */
  list(prefix: string, ref?: string): Promise<string[]>
  /** The commit a branch points at, or undefined when there is no such branch. */
  head(branch: string): Promise<string | undefined>
  /** Commits `files` on `branch`, created from `main` when missing. Returns the new commit. */
  commit(branch: string, files: Array<{ path: string; content: string }>, message: string): Promise<string>
  /** True when `branch` exists and everything on it is in `main`. */
  isMerged(branch: string): Promise<boolean>
  /** Merges `branch` into `main` (fast-forward when it can). Throws on a conflict. */
  merge(branch: string): Promise<string>
  /** Deletes `branch` without merging it: the pull request is closed. */
  close(branch: string): Promise<void>
  /** Branch names under `prefix`. */
  branches(prefix?: string): Promise<string[]>
  /** The changes of `branch` since it left `main`, as a unified diff. */
  diff(branch: string): Promise<string>
  /** How many commits `branch` has that `main` had when it was created (its merge base). */
  commitsAhead(branch: string): Promise<number>
}

/**
 * Opens the repository in `dir`, creating it from the files in `seedDir` (one first commit
 * on `main`) when it does not exist yet.
 */
export async function openGitOpsRepo(dir: string, seedDir: string): Promise<GitOpsRepo> {
  if (!existsSync(join(dir, 'HEAD'))) {
    await mkdir(dir, { recursive: true })
    await git(dir, ['init', '--bare', '--quiet', `--initial-branch=${MAIN}`])
    const files = await Promise.all(
      (await listFiles(seedDir)).sort().map(async (path) => ({ path, content: await readFile(join(seedDir, path), 'utf8') })),
    )
    await writeCommit(dir, undefined, files, 'Initial GitOps repository', `refs/heads/${MAIN}`)
  }

  const revParse = async (ref: string) => {
    const { stdout, code } = await git(dir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { okCodes: [1] })
    return code === 0 ? stdout.trim() : undefined
  }

  const repo: GitOpsRepo = {
    dir,
    async read(path, ref = MAIN) {
      const { stdout, code } = await git(dir, ['cat-file', 'blob', `${ref}:${path}`], { okCodes: [128] })
      return code === 0 ? stdout : undefined
    },
    async list(prefix, ref = MAIN) {
      const { stdout } = await git(dir, ['ls-tree', '-r', '--name-only', ref, '--', prefix])
      return stdout.split('\n').filter(Boolean)
    },
    head: (branch) => revParse(`refs/heads/${branch}`),
    async commit(branch, files, message) {
      const parent = (await revParse(`refs/heads/${branch}`)) ?? (await revParse(`refs/heads/${MAIN}`))
      return writeCommit(dir, parent, files, message, `refs/heads/${branch}`)
    },
    async isMerged(branch) {
      const tip = await revParse(`refs/heads/${branch}`)
      if (!tip) return false
      const { code } = await git(dir, ['merge-base', '--is-ancestor', tip, `refs/heads/${MAIN}`], { okCodes: [1] })
      return code === 0
    },
    async merge(branch) {
      for (let attempt = 0; attempt < 10; attempt++) {
        const tip = await revParse(`refs/heads/${branch}`)
        if (!tip) throw new Error(`no branch ${branch}`)
        const main = (await revParse(`refs/heads/${MAIN}`))!
        let next = tip
        const { code: ff } = await git(dir, ['merge-base', '--is-ancestor', main, tip], { okCodes: [1] })
        if (ff !== 0) {
          const merged = await git(dir, ['merge-tree', '--write-tree', main, tip], { okCodes: [1] })
          if (merged.code !== 0) throw new Error(`merging ${branch} into ${MAIN} conflicts:\n${merged.stdout}`)
          const tree = merged.stdout.split('\n')[0]!.trim()
          next = (await git(dir, ['commit-tree', tree, '-p', main, '-p', tip, '-m', `Merge ${branch}`])).stdout.trim()
        }
        // Compare-and-swap on main: a concurrent merge makes this fail, and we merge again on top of it.
        const { code } = await git(dir, ['update-ref', `refs/heads/${MAIN}`, next, main], { okCodes: [128] })
        if (code === 0) return next
      }
      throw new Error(`could not merge ${branch}: ${MAIN} kept moving`)
    },
    async close(branch) {
      await git(dir, ['update-ref', '-d', `refs/heads/${branch}`])
    },
    async branches(prefix = '') {
      const { stdout } = await git(dir, ['for-each-ref', '--format=%(refname:short)', `refs/heads/${prefix}`])
      return stdout.split('\n').filter(Boolean)
    },
    async diff(branch) {
      return (await git(dir, ['diff', `refs/heads/${MAIN}...refs/heads/${branch}`])).stdout
    },
    async commitsAhead(branch) {
      const base = (await git(dir, ['merge-base', `refs/heads/${branch}`, `refs/heads/${MAIN}`])).stdout.trim()
      const tip = (await revParse(`refs/heads/${branch}`))!
      const { stdout } = await git(dir, ['rev-list', '--count', `${base}..${tip}`])
      return Number(stdout.trim())
    },
  }
  return repo
}

/** Writes `files` on top of `parent`'s tree as one commit and points `ref` at it (only if `ref` has not moved meanwhile). */
async function writeCommit(
  dir: string,
  parent: string | undefined,
  files: Array<{ path: string; content: string }>,
  message: string,
  ref: string,
): Promise<string> {
  const index = join(dir, `loom-index-${randomUUID()}`)
  const env = { GIT_INDEX_FILE: index }
  try {
    if (parent) await git(dir, ['read-tree', parent], { env })
    else await git(dir, ['read-tree', '--empty'], { env })
    for (const file of files) {
      const blob = (await git(dir, ['hash-object', '-w', '--stdin'], { input: file.content })).stdout.trim()
      await git(dir, ['update-index', '--add', '--cacheinfo', `100644,${blob},${file.path}`], { env })
    }
    const tree = (await git(dir, ['write-tree'], { env })).stdout.trim()
    const commit = (await git(dir, ['commit-tree', tree, ...(parent ? ['-p', parent] : []), '-m', message])).stdout.trim()
    const old = (await git(dir, ['rev-parse', '--verify', '--quiet', ref], { okCodes: [1] })).stdout.trim()
    // The old value makes this a compare-and-swap: two writers to one branch cannot silently drop a commit.
    await git(dir, ['update-ref', ref, commit, old || '0'.repeat(40)])
    return commit
  } finally {
    await rm(index, { force: true })
  }
}
