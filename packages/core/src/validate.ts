import * as v from 'valibot'
import { LoomError } from './errors'

/**
 * Parses `value` with `schema` or throws an `invalid` LoomError whose message names the
 * field and the reason, e.g. `candidates.2.id: must not contain "__"`. `label` names the
 * value itself when the issue is at its root (a bare id argument, say).
 */
export function parse<const S extends v.GenericSchema>(schema: S, value: unknown, label: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value)
  if (result.success) return result.output
  const issues = result.issues.map((issue) => ({
    field: fieldOf(issue, label),
    message: messageOf(issue),
  }))
  const first = issues[0]!
  throw new LoomError('invalid', `${first.field}: ${first.message}`, {
    details: { field: first.field, issues },
  })
}

/** valibot reports a missing key as "Invalid key: Expected "id" but received undefined". */
function messageOf(issue: v.BaseIssue<unknown>): string {
  if (issue.type === 'object' && issue.received === 'undefined' && issue.expected?.startsWith('"')) return 'is required'
  return issue.message
}

function fieldOf(issue: v.BaseIssue<unknown>, label: string): string {
  const path = v.getDotPath(issue)
  if (path) return label ? `${label}.${path}` : path
  // A missing key reports no path on object schemas in some cases; fall back to the label.
  return label || 'body'
}
