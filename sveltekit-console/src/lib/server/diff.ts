/**
 * Line diffs for the dry-run preview, computed on the server so the browser receives only
 * what it shows: the changed lines with two lines of context, and folds that say how many
 * unchanged lines sit between them.
 */
import { structuredPatch } from 'diff'
import type { DryRunFile, DryRunResult } from '@loom/core'
import type { DiffBlock, DiffLine, FileDiff, StepPreview } from '../types'

export type { FileDiff, StepPreview }

/** Lines of context kept around each change. */
const CONTEXT_LINES = 2

function lineCount(text: string): number {
  if (text === '') return 0
  const lines = text.split('\n')
  return text.endsWith('\n') ? lines.length - 1 : lines.length
}

/**
 * The diff of one file as blocks of lines and folds.
 *
 * @example
 * diffFile({ path: 'Chart.yaml', repo: 'acme/gitops', before: 'a\nb\n', after: 'a\nc\n' })
 * // { isNew: false, added: 1, removed: 1, blocks: [{ kind: 'lines', lines: [...] }] }
 */
export function diffFile(file: DryRunFile): FileDiff {
  const before = file.before ?? ''
  const isNew = before === ''
  const patch = structuredPatch(file.path, file.path, before, file.after, undefined, undefined, { context: CONTEXT_LINES })
  const blocks: DiffBlock[] = []
  let added = 0
  let removed = 0
  let nextOld = 1
  for (const hunk of patch.hunks) {
    // With two lines of context a hunk only has no old lines when the old file is empty.
    const hunkStart = Math.max(1, hunk.oldStart)
    if (hunkStart > nextOld) blocks.push({ kind: 'fold', count: hunkStart - nextOld })
    const lines: DiffLine[] = []
    let oldNo = hunkStart
    let newNo = Math.max(1, hunk.newStart)
    for (const raw of hunk.lines) {
      const mark = raw[0]
      const text = raw.slice(1)
      if (mark === '+') {
        lines.push({ type: 'add', text, newNo: newNo++ })
        added++
      } else if (mark === '-') {
        lines.push({ type: 'remove', text, oldNo: oldNo++ })
        removed++
      } else if (mark === ' ') {
        lines.push({ type: 'context', text, oldNo: oldNo++, newNo: newNo++ })
      }
      // '\' marks "No newline at end of file": not a line of the file.
    }
    blocks.push({ kind: 'lines', lines })
    nextOld = oldNo
  }
  const total = lineCount(before)
  if (patch.hunks.length > 0 && total >= nextOld) blocks.push({ kind: 'fold', count: total - nextOld + 1 })
  return { path: file.path, repo: file.repo, isNew, added, removed, blocks }
}

/** The preview of a whole dry run, step by step. */
export function previewOf(result: DryRunResult): StepPreview[] {
  return result.steps.map((step) => ({
    stepName: step.stepName,
    skipped: step.skipped,
    ...(step.error ? { error: step.error } : {}),
    files: (step.files ?? []).map(diffFile),
  }))
}
