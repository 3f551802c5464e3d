/** Shapes the server sends to the pages, beyond the domain types of `@loom/core`. */

export type DiffLine = { type: 'context' | 'add' | 'remove'; text: string; oldNo?: number; newNo?: number }
export type DiffBlock = { kind: 'lines'; lines: DiffLine[] } | { kind: 'fold'; count: number }

/** One file of a dry run, as line diffs with folds. */
export interface FileDiff {
  path: string
  repo: string
  /** No `before`: the step creates this file. */
  isNew: boolean
  added: number
  removed: number
  blocks: DiffBlock[]
}

/** One step of a dry run. */
export interface StepPreview {
  stepName: string
  skipped: boolean
  error?: string
  files: FileDiff[]
}

/** What the run page receives for a queued run's dry run. */
export type Preview = { steps: StepPreview[] } | { error: string; code: string }
