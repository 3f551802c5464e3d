import type * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { DEFAULT_LIMITS } from './limits'
import { localEngine } from './local-engine'
import { createLoom, type LoomInstance } from './loom/index'
import { memoryStore } from './memory-store'
import { CandidateRefSchema, DispatchStepRequestSchema, DryRunRequestSchema, DryRunResultSchema, limitedSchemas } from './schemas'
import { parse } from './validate'

/**
 * Every required field of every shape Loom takes from outside, removed one at a time from a
 * valid value, is refused with `invalid`, naming the field's path and saying it is required.
 * The lists of required fields are written out by reading the schemas, never read off the
 * schema objects: a field made optional in a schema would then drop out of its own test.
 */

/** The schemas `createLoom` judges its inputs with. */
const schemas = limitedSchemas(DEFAULT_LIMITS)

/** `value` without the key at the dotted `path` (`steps.0.workerApp`); `value` itself is left as it was. */
function without(value: unknown, path: string): unknown {
  const copy = structuredClone(value)
  const keys = path.split('.')
  const last = keys.pop()!
  let parent: any = copy
  for (const key of keys) parent = parent[key]
  expect(parent, `${path} must be in the valid value`).toHaveProperty(last)
  delete parent[last]
  return copy
}

/** The refusal `call` throws; fails the test when it throws nothing or something else than a `LoomError`. */
async function refusal(call: () => unknown): Promise<LoomError> {
  let caught: unknown
  try {
    await call()
  } catch (error) {
    caught = error
  }
  if (!LoomError.is(caught)) throw new Error(`expected a LoomError, got ${String(caught)}`)
  return caught
}

/** Asserts that `error` is the refusal of a missing `field`, as `parse` words it. */
function expectRequired(error: LoomError, field: string) {
  expect(error.code).toBe('invalid')
  expect(error.message).toBe(`${field}: is required`)
  expect(error.details?.field).toBe(field)
}

/** A candidate with every optional part present, so the required fields inside them can be removed. */
const candidate = {
  id: 'billing',
  kind: 'application',
  metadata: { team: 'payments' },
  files: [{ name: 'values', repo: 'acme/gitops', files: [{ path: 'apps/billing/values.yaml', url: 'https://git/values.yaml' }] }],
}
const step = { name: 'edit', workerApp: 'charts', description: 'Edit values', config: { chart: 'app' }, files: ['apps/*/values.yaml'] }

const announcement = {
  id: 'app-chart',
  name: 'App chart',
  description: 'Per-app charts',
  candidates: [candidate],
  steps: [step],
  workerUrl: 'http://charts.test',
}
const registration = { name: 'App chart', description: 'Per-app charts', candidates: [candidate], steps: [step] }
const stepReport = { stepName: 'edit', candidate, success: true, metadata: { prUrl: 'https://git/pr/1' }, attempt: 1 }

/** The required fields of a candidate, under `at` (`candidates.0`, `candidate`). */
const candidateFields = (at: string) => [
  `${at}.id`,
  `${at}.files.0.name`,
  `${at}.files.0.repo`,
  `${at}.files.0.files`,
  `${at}.files.0.files.0.path`,
  `${at}.files.0.files.0.url`,
]
const stepFields = ['steps.0.name', 'steps.0.workerApp']
const announcementFields = ['id', 'name', 'steps', ...stepFields, ...candidateFields('candidates.0')]
const registrationFields = ['name', 'candidates', 'steps', ...stepFields, ...candidateFields('candidates.0')]

interface Shape {
  name: string
  schema: v.GenericSchema
  /** What its caller labels it with (`createLoom` labels a bare candidate list `candidates`). */
  label: string
  valid: unknown
  /** Sent as `{ data: value }`, the way API 0.2 workers announce. */
  wrapped?: boolean
  /** Paths inside `valid`: each one removed must be refused as required. */
  required: string[]
}

const shapes: Shape[] = [
  {
    name: 'MigrationAnnouncement',
    schema: schemas.MigrationAnnouncement,
    label: '',
    valid: announcement,
    required: announcementFields,
  },
  {
    name: 'AnnounceRequest',
    schema: schemas.AnnounceRequest,
    label: '',
    valid: announcement,
    required: announcementFields,
  },
  {
    // The wrapper is taken off before the announcement is judged, so fields are named inside it.
    name: 'AnnounceRequest wrapped as { data }',
    schema: schemas.AnnounceRequest,
    label: '',
    valid: announcement,
    wrapped: true,
    required: announcementFields,
  },
  {
    name: 'RegisterMigrationRequest',
    schema: schemas.RegisterMigrationRequest,
    label: '',
    valid: registration,
    required: registrationFields,
  },
  {
    name: 'SubmitCandidatesRequest',
    schema: schemas.SubmitCandidatesRequest,
    label: '',
    valid: { candidates: [candidate] },
    required: ['candidates', ...candidateFields('candidates.0')],
  },
  {
    // `loom.submitCandidates(id, list)` takes the bare list.
    name: 'CandidateList',
    schema: schemas.CandidateList,
    label: 'candidates',
    valid: [candidate],
    required: candidateFields('0'),
  },
  {
    name: 'StepCompletedEvent',
    schema: schemas.StepCompletedEvent,
    label: '',
    valid: stepReport,
    required: ['stepName', 'candidate', 'success', ...candidateFields('candidate')],
  },
  {
    name: 'DispatchStepRequest',
    schema: DispatchStepRequestSchema,
    label: '',
    valid: {
      migrationId: 'app-chart',
      runId: 'app-chart__billing',
      stepName: 'edit',
      candidate,
      config: { chart: 'app' },
      callbackId: 'app-chart__billing',
      eventName: 'step-completed:edit',
      attempt: 1,
    },
    required: ['migrationId', 'runId', 'stepName', 'candidate', 'callbackId', 'eventName', ...candidateFields('candidate')],
  },
  {
    name: 'DryRunRequest',
    schema: DryRunRequestSchema,
    label: '',
    valid: { migrationId: 'app-chart', candidate, steps: [step] },
    required: ['migrationId', 'candidate', 'steps', ...stepFields, ...candidateFields('candidate')],
  },
  {
    // Not a request but a worker's answer, which core judges before merging it.
    name: 'DryRunResult',
    schema: DryRunResultSchema,
    label: '',
    valid: {
      steps: [
        {
          stepName: 'edit',
          skipped: false,
          error: 'none',
          files: [{ path: 'values.yaml', repo: 'acme/gitops', before: 'a: 1\n', after: 'a: 2\n' }],
        },
      ],
    },
    required: ['steps', 'steps.0.stepName', 'steps.0.skipped', 'steps.0.files.0.path', 'steps.0.files.0.repo', 'steps.0.files.0.after'],
  },
]

for (const shape of shapes) {
  describe(`${shape.name}: each required field removed in turn`, () => {
    const sent = (value: unknown) => (shape.wrapped ? { data: value } : value)

    it('takes the valid value whole', () => {
      expect(() => parse(shape.schema, sent(shape.valid), shape.label)).not.toThrow()
    })

    it.each(shape.required)('refuses it without %s, naming it as required', async (path) => {
      const error = await refusal(() => parse(shape.schema, sent(without(shape.valid, path)), shape.label))
      expectRequired(error, shape.label ? `${shape.label}.${path}` : path)
    })
  })
}

describe('CandidateRef (the body of queue and dry-run)', () => {
  // A union: with neither option's key there is no one field to name, so the body is named with both.
  it.each([{}, { candidate: {} }, { candidate: { kind: 'application' } }])('refuses %j, saying what it must have', async (body) => {
    const error = await refusal(() => parse(CandidateRefSchema, body, ''))
    expect(error.code).toBe('invalid')
    expect(error.message).toBe('body: must have candidateId or candidate.id')
    expect(error.details?.field).toBe('body')
  })

  it('takes either option', () => {
    expect(parse(CandidateRefSchema, { candidateId: 'billing' }, '')).toEqual({ candidateId: 'billing' })
    expect(parse(CandidateRefSchema, { candidate: { id: 'billing' } }, '')).toEqual({ candidate: { id: 'billing' } })
  })
})

describe('announce and register through createLoom, each required field removed in turn', () => {
  const calls = [
    {
      name: 'announce',
      valid: announcement,
      required: announcementFields,
      call: (loom: LoomInstance, input: unknown) => loom.announce(input as never),
    },
    {
      name: 'register',
      valid: registration,
      required: registrationFields,
      call: (loom: LoomInstance, input: unknown) => loom.register(input as never),
    },
  ]

  for (const { name, valid, required, call } of calls) {
    describe(name, () => {
      it.each(required)('refuses it without %s as required, and registers nothing', async (path) => {
        const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
        try {
          expectRequired(await refusal(() => call(loom, without(valid, path))), path)
          expect(await loom.listMigrations()).toEqual([])
        } finally {
          await loom.close()
        }
      })

      it('registers the valid value whole, so the refusals above are of the field removed', async () => {
        const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
        try {
          const migration = await call(loom, valid)
          expect(migration.steps).toEqual([step])
          expect((await loom.listMigrations()).map((m) => m.id)).toEqual([migration.id])
        } finally {
          await loom.close()
        }
      })
    })
  }
})
