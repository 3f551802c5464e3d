import * as v from 'valibot'
import { LoomError } from './errors'

/**
 * Parses `value` with `schema` or throws an `invalid` LoomError whose message names the
 * field and the reason, e.g. `candidates.2.id: must not contain "__"`. `label` names the
 * value itself when the issue is at its root (a bare id argument, say). Parsing stops at the
 * first issue: a request with a million wrong values costs what one does.
 */
export function parse<const S extends v.GenericSchema>(schema: S, value: unknown, label: string): v.InferOutput<S> {
  const result = v.safeParse(schema, value, { abortEarly: true })
  if (result.success) return result.output
  const issues = result.issues.map(specific).map((issue) => ({
    field: fieldOf(issue, label),
    message: messageOf(issue),
  }))
  const first = issues[0]!
  throw new LoomError('invalid', `${first.field}: ${first.message}`, {
    details: { field: first.field, issues },
  })
}

/**
 * A union that failed: when one option's shape matched and only a rule inside it failed (a
 * `candidateId` that is empty), that rule is the issue, as valibot reports it when it does
 * not stop early; otherwise the union's own message ("must have candidateId or candidate.id").
 */
function specific(issue: v.BaseIssue<unknown>): v.BaseIssue<unknown> {
  if (issue.type !== 'union' || !issue.issues) return issue
  const rules = issue.issues.filter((sub) => sub.kind === 'validation')
  if (rules.length === 0) return issue
  return rules.reduce((a, b) => ((v.getDotPath(b)?.length ?? 0) > (v.getDotPath(a)?.length ?? 0) ? b : a))
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
