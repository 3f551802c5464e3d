/**
 * Toasts: one short message per result, announced to screen readers through the live region
 * that renders them. Errors stay until dismissed; the rest leave by themselves.
 */
export interface Toast {
  id: number
  kind: 'success' | 'error' | 'info'
  message: string
  link?: { href: string; label: string }
}

let next = 1
export const toasts = $state<Toast[]>([])

export function toast(kind: Toast['kind'], message: string, link?: Toast['link']): void {
  const item: Toast = { id: next++, kind, message, ...(link ? { link } : {}) }
  toasts.push(item)
  if (toasts.length > 5) toasts.shift()
  if (kind !== 'error') setTimeout(() => dismiss(item.id), 5000)
}

export function dismiss(id: number): void {
  const index = toasts.findIndex((t) => t.id === id)
  if (index >= 0) toasts.splice(index, 1)
}
