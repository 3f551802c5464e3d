import { LoomError } from '@loom/core'
import type { StepReport } from '@loom/worker'
import { existsSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import type { GitOpsRepo } from './gitops'

/** A step waiting for its pull request (branch) to be merged. */
export interface OpenPullRequest {
  runId: string
  stepName: string
  branch: string
  prUrl: string
}

export interface PullRequestsOptions {
  repo: GitOpsRepo
  /** Where open pull requests are kept, so a restarted worker still completes their steps. */
  stateFile: string
  /** Reports a step (the worker's `complete`). */
  report: (runId: string, stepName: string, report: StepReport) => Promise<void>
  /** The link shown in the console for a branch. */
  urlOf: (branch: string) => string
  /** How often branches are checked. Default 1 s. */
  pollMs?: number
  /** Merge each pull request this long after it opens, as a reviewer would. Default: never (merge yourself). */
  autoMergeMs?: number
  onError: (error: unknown) => void
}

/**
 * Watches the example's pull requests: a merged branch completes its step, a branch closed
 * (deleted) without merging fails it. The list is saved in the data folder, so a worker
 * restarted while a pull request is open still reports it when it is merged.
 */
export interface PullRequests {
  urlOf(branch: string): string
  /** Watches a pull request until it is merged or closed. Idempotent per branch. */
  watch(pr: OpenPullRequest): Promise<void>
  /** The pull requests being watched. */
  open(): OpenPullRequest[]
  /** Checks every watched branch once now. */
  check(): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

export function pullRequests(options: PullRequestsOptions): PullRequests {
  const { repo, report, onError } = options
  const watched = new Map<string, OpenPullRequest>()
  const autoMerges = new Map<string, ReturnType<typeof setTimeout>>()
  let timer: ReturnType<typeof setInterval> | undefined
  let checking: Promise<void> | undefined
  let saving = Promise.resolve()
  let stopped = false

  // Writes are chained and atomic (write then rename), so the file is never half-written.
  const save = () => {
    const body = JSON.stringify([...watched.values()], null, 2)
    saving = saving.then(async () => {
      await writeFile(`${options.stateFile}.tmp`, body)
      await rename(`${options.stateFile}.tmp`, options.stateFile)
    })
    return saving
  }

  const armAutoMerge = (pr: OpenPullRequest) => {
    if (options.autoMergeMs === undefined || autoMerges.has(pr.branch) || stopped) return
    const handle = setTimeout(() => {
      autoMerges.delete(pr.branch)
      if (!watched.has(pr.branch)) return
      repo.merge(pr.branch).then(() => self.check(), onError)
    }, options.autoMergeMs)
    handle.unref?.()
    autoMerges.set(pr.branch, handle)
  }

  const settle = async (pr: OpenPullRequest, outcome: StepReport) => {
    try {
      await report(pr.runId, pr.stepName, outcome)
    } catch (error) {
      // Loom unreachable: keep the pull request and report at the next check. Any other answer
      // (the run was cancelled, the step already ended) is final: the step needs nothing more.
      if (!LoomError.is(error) || error.code === 'unavailable') throw error
    }
    watched.delete(pr.branch)
    await save()
  }

  const checkOne = async (pr: OpenPullRequest) => {
    if (await repo.isMerged(pr.branch)) {
      const commit = await repo.head(pr.branch)
      await settle(pr, { success: true, metadata: { phase: 'merged', prUrl: pr.prUrl, branch: pr.branch, ...(commit ? { commit } : {}) } })
    } else if ((await repo.head(pr.branch)) === undefined) {
      await settle(pr, {
        success: false,
        metadata: { phase: 'closed', prUrl: pr.prUrl, error: `pull request ${pr.branch} was closed without merging` },
      })
    }
  }

  const self: PullRequests = {
    urlOf: options.urlOf,
    async watch(pr) {
      if (!watched.has(pr.branch)) {
        watched.set(pr.branch, pr)
        await save()
      }
      armAutoMerge(pr)
    },
    open: () => [...watched.values()],
    check() {
      // One check at a time: a slow check (Loom retrying) must not be overlapped by the next tick.
      checking ??= (async () => {
        for (const pr of [...watched.values()]) {
          if (stopped) return
          await checkOne(pr).catch(onError)
        }
      })().finally(() => {
        checking = undefined
      })
      return checking
    },
    async start() {
      if (existsSync(options.stateFile)) {
        const saved = JSON.parse(await readFile(options.stateFile, 'utf8')) as OpenPullRequest[]
        for (const pr of saved) watched.set(pr.branch, pr)
      }
      for (const pr of watched.values()) armAutoMerge(pr)
      timer = setInterval(() => void self.check(), options.pollMs ?? 1000)
      timer.unref?.()
    },
    async stop() {
      stopped = true
      clearInterval(timer)
      for (const handle of autoMerges.values()) clearTimeout(handle)
      autoMerges.clear()
      await checking
      await saving
    },
  }
  return self
}
