/**
 * The `use:enhance` handler every action form uses: it marks the form pending (its buttons
 * disabled and busy), shows the outcome as a toast — Loom's own message when the action was
 * refused, such as the 409 of a lost race — and then refreshes the page's data.
 */
import type { SubmitFunction } from '@sveltejs/kit'
import { invalidateAll } from '$app/navigation'
import { toast } from './toasts.svelte'

export interface Pending {
  has(key: string): boolean
  add(key: string): void
  delete(key: string): void
}

interface Options {
  /** Where the toast's link points after a success, e.g. the run page after Queue. */
  linkOf?: (data: Record<string, unknown>) => { href: string; label: string } | undefined
}

export function submitWith(pending: Pending, key: string, options: Options = {}): SubmitFunction {
  return () => {
    pending.add(key)
    return async ({ result, update }) => {
      try {
        if (result.type === 'success') {
          const data = (result.data ?? {}) as Record<string, unknown>
          const link = options.linkOf?.(data)
          // Done, but what it started went wrong at once: said as an error, with the link to see why.
          toast(data.failed === true ? 'error' : 'success', String(data.message ?? 'Done.'), link)
        } else if (result.type === 'failure') {
          const data = (result.data ?? {}) as Record<string, unknown>
          const message = String(data.message ?? `The action was refused (${result.status}).`)
          // A conflict means someone (another operator, a worker) changed the candidate first.
          toast(
            'error',
            data.code === 'conflict' ? `Someone got there first. ${message.charAt(0).toUpperCase()}${message.slice(1)}.` : message,
          )
        } else if (result.type === 'error') {
          toast('error', result.error instanceof Error ? result.error.message : 'The action failed; try again.')
        }
        // Keep the form's own fields (hidden ids) and refresh the data behind the page; after a
        // refusal too, since it usually means the page was out of date (a lost race).
        await update({ reset: false })
        if (result.type === 'failure') await invalidateAll()
      } finally {
        pending.delete(key)
      }
    }
  }
}
