import { describe, expect, it } from 'vitest'
import { diffFile, previewOf } from './diff'

const lines = (n: number, prefix = 'line') => Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`)

describe('diffFile', () => {
  it('keeps two lines of context and folds the unchanged lines around a change', () => {
    const before = `${lines(20).join('\n')}\n`
    const after = `${lines(20)
      .map((l, i) => (i === 9 ? 'changed 10' : l))
      .join('\n')}\n`
    const diff = diffFile({ path: 'values.yaml', repo: 'acme/gitops', before, after })
    expect(diff).toMatchObject({ path: 'values.yaml', repo: 'acme/gitops', isNew: false, added: 1, removed: 1 })
    expect(diff.blocks).toEqual([
      { kind: 'fold', count: 7 },
      {
        kind: 'lines',
        lines: [
          { type: 'context', text: 'line 8', oldNo: 8, newNo: 8 },
          { type: 'context', text: 'line 9', oldNo: 9, newNo: 9 },
          { type: 'remove', text: 'line 10', oldNo: 10 },
          { type: 'add', text: 'changed 10', newNo: 10 },
          { type: 'context', text: 'line 11', oldNo: 11, newNo: 11 },
          { type: 'context', text: 'line 12', oldNo: 12, newNo: 12 },
        ],
      },
      { kind: 'fold', count: 8 },
    ])
  })

  it('folds the unchanged lines between two distant changes', () => {
    const before = `${lines(30).join('\n')}\n`
    const after = `${lines(30)
      .map((l, i) => (i === 2 || i === 25 ? `${l}!` : l))
      .join('\n')}\n`
    const diff = diffFile({ path: 'a', repo: 'r', before, after })
    const folds = diff.blocks.filter((b) => b.kind === 'fold')
    // Changes at lines 3 and 26: context ends at 5 and starts at 24, so 6..23 are folded.
    expect(folds).toEqual([
      { kind: 'fold', count: 18 },
      { kind: 'fold', count: 2 },
    ])
    expect(diff.added).toBe(2)
    expect(diff.removed).toBe(2)
  })

  it('shows a new file as added lines only, without folds', () => {
    const diff = diffFile({ path: 'MIGRATION.md', repo: 'acme/gitops', after: '# title\n\nbody\n' })
    expect(diff.isNew).toBe(true)
    expect(diff.blocks).toEqual([
      {
        kind: 'lines',
        lines: [
          { type: 'add', text: '# title', newNo: 1 },
          { type: 'add', text: '', newNo: 2 },
          { type: 'add', text: 'body', newNo: 3 },
        ],
      },
    ])
  })

  it('treats an empty before as a new file', () => {
    expect(diffFile({ path: 'x', repo: 'r', before: '', after: 'a\n' }).isNew).toBe(true)
  })

  it('has no blocks when the file does not change', () => {
    const diff = diffFile({ path: 'x', repo: 'r', before: 'a\nb\n', after: 'a\nb\n' })
    expect(diff.blocks).toEqual([])
    expect(diff.added + diff.removed).toBe(0)
  })

  it('drops the "no newline at end of file" markers, which are not lines of the file', () => {
    const diff = diffFile({ path: 'x', repo: 'r', before: 'a\nb', after: 'a\nc' })
    const texts = diff.blocks.flatMap((b) => (b.kind === 'lines' ? b.lines.map((l) => `${l.type}:${l.text}`) : []))
    expect(texts).toEqual(['context:a', 'remove:b', 'add:c'])
  })
})

describe('previewOf', () => {
  it('keeps every step in order, with skipped steps, errors and no-change steps as they are', () => {
    const preview = previewOf({
      steps: [
        { stepName: 'bump', skipped: false, files: [{ path: 'a', repo: 'r', before: 'x\n', after: 'y\n' }] },
        { stepName: 'elsewhere', skipped: true },
        { stepName: 'broken', skipped: false, error: 'template missing' },
        { stepName: 'nothing', skipped: false, files: [] },
      ],
    })
    expect(preview.map((s) => [s.stepName, s.skipped, s.error ?? null, s.files.length])).toEqual([
      ['bump', false, null, 1],
      ['elsewhere', true, null, 0],
      ['broken', false, 'template missing', 0],
      ['nothing', false, null, 0],
    ])
  })
})
