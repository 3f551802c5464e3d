import { LoomError, SlugSchema, parse } from '@loom/core'

/** The first level of every topic Loom uses, unless a `topicPrefix` option says otherwise. */
export const DEFAULT_TOPIC_PREFIX = 'loom'

/**
 * Checks a topic prefix and drops trailing slashes. A prefix is one or more topic levels
 * without wildcards: it is put in front of subscriptions, where `+` or `#` would widen them.
 */
export function topicPrefix(prefix: string | undefined): string {
  const value = (prefix ?? DEFAULT_TOPIC_PREFIX).replace(/\/+$/, '')
  if (!value || /[+#\u0000]/.test(value) || value.startsWith('$')) {
    throw new LoomError('invalid', `topicPrefix: "${prefix}" must be non-empty, without + # or NUL, and not start with $`, {
      details: { field: 'topicPrefix' },
    })
  }
  return value
}

/** A worker app as a topic level; its slug rules keep `/ + #` out of the topic. */
export function workerAppLevel(workerApp: string): string {
  return parse(SlugSchema, workerApp, 'workerApp')
}

export const topics = {
  announce: (prefix: string, migrationId: string) => `${prefix}/announce/${migrationId}`,
  announceAll: (prefix: string) => `${prefix}/announce/+`,
  dispatch: (prefix: string, workerApp: string) => `${prefix}/workers/${workerApp}/dispatch`,
  dryRun: (prefix: string, workerApp: string) => `${prefix}/workers/${workerApp}/dry-run`,
  inbox: (prefix: string, id: string) => `${prefix}/replies/${id}`,
}

/** True when `topic` matches the subscription `filter` (MQTT `+` and `#` wildcards). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  // Wildcards at the first level do not match topics starting with $ (MQTT 3.1.1 §4.7.2).
  if (t[0]?.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
