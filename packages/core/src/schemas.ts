/**
 * valibot schemas for every entity of the domain model and every shape of the HTTP API.
 * They are the single definition of what is valid: `createLoom` parses its inputs with them,
 * `@loom/hono` validates requests and generates its OpenAPI document from them, and the
 * TypeScript types below are inferred from them.
 */
import * as v from 'valibot'
import { ActorSchema } from './actors'
import { LOOM_ERROR_CODES } from './errors'
import { DEFAULT_LIMITS, type Limits, RESERVED_KEYS } from './limits'
import { MAX_STEP_TIMEOUT_MS, parseDuration } from './steps'

/** Most activity entries in one page. */
export const MAX_ACTIVITY_PAGE = 1000

/** Longest reason an operator may give (a cancel's). */
export const MAX_REASON_LENGTH = 2000

/** Longest migration or candidate id accepted. */
export const MAX_ID_LENGTH = 200

/**
 * A migration or candidate id: 1–200 characters of `A–Z a–z 0–9 . _ -`, never `__`.
 * Also never starting or ending with `_` and never `.` or `..`: without that,
 * `runId('a_', 'b')` and `runId('a', '_b')` would both be `a___b`, and a dot-only id
 * would be rewritten by URL normalisation before it reached the API.
 */
export const SlugSchema = v.pipe(
  v.string('must be a string'),
  v.minLength(1, 'must not be empty'),
  v.maxLength(MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} characters`),
  v.regex(/^[A-Za-z0-9._-]+$/, 'may only contain A-Z a-z 0-9 . _ -'),
  v.check((s) => !s.includes('__'), 'must not contain "__"'),
  v.check((s) => !s.startsWith('_') && !s.endsWith('_'), 'must not start or end with "_"'),
  v.check((s) => s !== '.' && s !== '..', 'must not be "." or ".."'),
)

const NonEmpty = (max: number) =>
  v.pipe(v.string('must be a string'), v.minLength(1, 'must not be empty'), v.maxLength(max, `must be at most ${max} characters`))

/** A whole number from `min` to `max`, as a page's `limit` or `offset`. */
const IntegerIn = (min: number, max: number) =>
  v.pipe(
    v.number('must be a number'),
    v.integer('must be an integer'),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  )

const Text = (max: number, field?: string) =>
  v.pipe(v.string('must be a string'), v.maxLength(max, `must be at most ${max} characters${field ? ` (limits.${field})` : ''}`))

/** Every candidate status, in lifecycle order. */
export const CANDIDATE_STATUSES = ['not_started', 'queued', 'running', 'completed'] as const

export const CandidateStatusSchema = v.picklist(CANDIDATE_STATUSES, `must be one of ${CANDIDATE_STATUSES.join(', ')}`)
/** The statuses a candidate run can hold; a candidate without a run is `not_started`. */
export const RunStatusSchema = v.picklist(['queued', 'running', 'completed'], 'must be one of queued, running, completed')

export const FileRefSchema = v.object({
  path: NonEmpty(4096),
  url: Text(4096),
})

const unique = (values: string[]) => new Set(values).size === values.length

/** `config.timeout` of a step, when given, is a deadline of at most 90 days. */
const timeoutIssue = (timeout: string | undefined): string | undefined => {
  if (timeout === undefined) return undefined
  const ms = parseDuration(timeout)
  if (ms === undefined)
    return `"${timeout.slice(0, 40)}" is not a duration: write a whole number of seconds, minutes or hours ("90s", "30m", "2h")`
  if (ms > MAX_STEP_TIMEOUT_MS) return `"${timeout}" is longer than the longest deadline, 90 days (2160h)`
  return undefined
}

/**
 * Where a worker is reached over HTTP: an absolute http(s) URL without credentials, query or
 * fragment (Loom appends `/steps/dispatch` and `/dry-run` to it). Whether this deployment
 * calls it at all is `createLoom`'s `workerUrls` allow-list.
 */
export const WorkerUrlSchema = v.pipe(
  v.string('must be a string'),
  v.maxLength(2048, 'must be at most 2048 characters'),
  v.check<string, v.ErrorMessage<v.CheckIssue<string>>>(
    (text) => workerUrlIssue(text) === undefined,
    (issue) => workerUrlIssue(issue.input) ?? '',
  ),
)

function workerUrlIssue(text: string): string | undefined {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return 'must be an absolute URL'
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL'
  if (url.username || url.password) return 'must not carry credentials (user:password@); workers are called with the worker token'
  if (url.search || url.hash || text.includes('?') || text.includes('#')) return 'must not have a query or a fragment'
  // A server or proxy that decodes these before routing would see another path than the allow-list did.
  if (/%(2f|2e|5c)/i.test(url.pathname)) return 'must not encode "/", "." or "\\" in its path (%2F, %2E, %5C)'
  return undefined
}

/**
 * A run's attempt: a positive integer, greater for each queue from `not_started`. It fences
 * dispatches and reports: work of an older attempt (a run cancelled and run again) never
 * moves the current one.
 */
const AttemptSchema = v.pipe(v.number('must be a number'), v.integer('must be an integer'), v.minValue(1, 'must be at least 1'))

/** A list, not yet judged item by item: measuring it first copies nothing. */
const AnyList = v.custom<unknown[]>(Array.isArray, 'must be an array')

/**
 * The schemas whose sizes are bounded by {@link Limits}: maps, candidates, steps, and the
 * requests that carry them. Every list and map is measured before its items are judged, so a
 * request over a limit is refused in time proportional to the limit, not to the request.
 * `createLoom({ limits })` judges its inputs with these; the exports below are the defaults.
 */
export function limitedSchemas(limits: Limits) {
  const count = <T extends unknown[] | Record<string, unknown>>(what: string, max: number, field: string) =>
    v.check<T, v.ErrorMessage<v.CheckIssue<T>>>(
      (value) => sizeOf(value) <= max,
      (issue) => `${sizeOf(issue.input)} ${what} are more than the limit of ${max} (limits.${field})`,
    )

  /** An opaque string → string map (candidate metadata and state, step config, step metadata). */
  const StringMap = v.pipe(
    v.custom<Record<string, unknown>>((value) => typeof value === 'object' && value !== null && !Array.isArray(value), 'must be an object'),
    count('keys', limits.mapKeys, 'mapKeys'),
    v.check(
      (map) => reservedKeyOf(map) === undefined,
      (issue) => `"${reservedKeyOf(issue.input)}" is a reserved key (${RESERVED_KEYS.join(', ')} cannot be stored); rename it`,
    ),
    v.check((map) => Object.keys(map).every((key) => key.length <= MAX_KEY_LENGTH), `keys must be at most ${MAX_KEY_LENGTH} characters`),
    v.record(v.string(), Text(limits.valueLength, 'valueLength')),
  )

  const FileGroup = v.object({
    name: NonEmpty(500),
    repo: Text(500),
    files: v.pipe(AnyList, count('files', limits.files, 'files'), v.array(FileRefSchema)),
  })

  const Candidate = v.object({
    id: SlugSchema,
    kind: v.optional(Text(200)),
    metadata: v.optional(StringMap),
    state: v.optional(StringMap),
    files: v.optional(v.pipe(AnyList, count('file groups', limits.files, 'files'), v.array(FileGroup))),
  })

  const CandidateList = v.pipe(
    AnyList,
    count('candidates', limits.candidates, 'candidates'),
    v.array(Candidate),
    v.check((list) => unique(list.map((c) => c.id)), 'candidate ids must be unique'),
  )

  const StepDefinition = v.pipe(
    v.object({
      name: NonEmpty(200),
      workerApp: SlugSchema,
      description: v.optional(Text(10_000)),
      config: v.optional(StringMap),
      files: v.optional(v.pipe(AnyList, count('files', limits.files, 'files'), v.array(NonEmpty(4096)))),
    }),
    v.forward(
      v.check(
        (step) => timeoutIssue(step.config?.timeout) === undefined,
        (issue) => `step "${issue.input.name}": ${timeoutIssue(issue.input.config?.timeout)}`,
      ),
      ['config', 'timeout'],
    ),
  )

  const StepList = v.pipe(
    AnyList,
    count('steps', limits.steps, 'steps'),
    v.minLength(1, 'must list at least one step'),
    v.array(StepDefinition),
    v.check((list) => unique(list.map((s) => s.name)), 'step names must be unique'),
  )

  const MigrationAnnouncement = v.object({
    id: SlugSchema,
    name: NonEmpty(500),
    description: v.optional(Text(10_000)),
    candidates: v.optional(CandidateList),
    steps: StepList,
    workerUrl: v.optional(WorkerUrlSchema),
  })

  return {
    StringMap,
    FileGroup,
    Candidate,
    CandidateList,
    StepDefinition,
    StepList,
    MigrationAnnouncement,
    /**
     * An announcement as it arrives from a worker, over HTTP or MQTT: bare, or wrapped as
     * `{ data: … }` the way API 0.2 workers send it. The one place that unwraps it.
     */
    AnnounceRequest: v.pipe(
      v.unknown(),
      v.transform((body) =>
        typeof body === 'object' && body !== null && 'data' in body && !('id' in body) ? (body as { data: unknown }).data : body,
      ),
      MigrationAnnouncement,
    ),
    RegisterMigrationRequest: v.object({
      name: NonEmpty(500),
      description: v.optional(Text(10_000)),
      candidates: CandidateList,
      steps: StepList,
    }),
    SubmitCandidatesRequest: v.object({ candidates: CandidateList }),
    /**
     * `PATCH …/candidates`: candidates to write and ids to drop, together within the request's
     * limit of candidates, and no id in both.
     */
    PatchCandidatesRequest: v.pipe(
      v.object({
        upsert: v.optional(CandidateList),
        remove: v.optional(
          v.pipe(
            AnyList,
            count('candidate ids', limits.candidates, 'candidates'),
            v.array(SlugSchema),
            v.check((list) => unique(list), 'candidate ids must be unique'),
          ),
        ),
      }),
      v.forward(
        v.check(
          (patch) => (patch.upsert?.length ?? 0) + (patch.remove?.length ?? 0) <= limits.candidates,
          (issue) =>
            `${issue.input.upsert?.length ?? 0} candidates to upsert and ${issue.input.remove?.length ?? 0} to remove are more than the limit of ${limits.candidates} (limits.candidates)`,
        ),
        ['remove'],
      ),
      v.forward(
        v.check(
          (patch) => bothIn(patch) === undefined,
          (issue) => `candidate ${bothIn(issue.input)} is both upserted and removed; name it in one of the two`,
        ),
        ['remove'],
      ),
    ),
    StepCompletedEvent: v.object({
      stepName: NonEmpty(200),
      candidate: Candidate,
      success: v.boolean('must be a boolean'),
      metadata: v.optional(StringMap),
      /**
       * The attempt of the dispatch this reports on (an addition to API 0.2; workers echo
       * `DispatchStepRequest.attempt`). A report of another attempt than the run's current one
       * is refused with `conflict` and changes nothing; a report without it (an API 0.2 worker)
       * is taken for the current attempt.
       */
      attempt: v.optional(AttemptSchema),
    }),
  }
}

/** An id a patch both upserts and removes, if any. */
function bothIn(patch: { upsert?: { id: string }[] | undefined; remove?: string[] | undefined }): string | undefined {
  if (!patch.upsert?.length || !patch.remove?.length) return undefined
  const upserted = new Set(patch.upsert.map((c) => c.id))
  return patch.remove.find((id) => upserted.has(id))
}

/** The schemas of {@link limitedSchemas}, for one set of limits. */
export type LimitedSchemas = ReturnType<typeof limitedSchemas>

const sizeOf = (value: unknown[] | Record<string, unknown>): number => (Array.isArray(value) ? value.length : Object.keys(value).length)

/** The first key of `map` that an object cannot hold as data, if any. */
const reservedKeyOf = (map: Record<string, unknown>): string | undefined =>
  Object.keys(map).find((key) => (RESERVED_KEYS as readonly string[]).includes(key))

/** Longest key of a string map. */
const MAX_KEY_LENGTH = 200

const defaults = limitedSchemas(DEFAULT_LIMITS)

/** An opaque string → string map (candidate metadata and state, step config, step metadata). */
export const StringMapSchema = defaults.StringMap
export const FileGroupSchema = defaults.FileGroup
export const CandidateSchema = defaults.Candidate
export const CandidateListSchema = defaults.CandidateList
export const StepDefinitionSchema = defaults.StepDefinition
export const StepListSchema = defaults.StepList
export const MigrationAnnouncementSchema = defaults.MigrationAnnouncement
export const AnnounceRequestSchema = defaults.AnnounceRequest
export const RegisterMigrationRequestSchema = defaults.RegisterMigrationRequest
export const SubmitCandidatesRequestSchema = defaults.SubmitCandidatesRequest
export const PatchCandidatesRequestSchema = defaults.PatchCandidatesRequest
export const StepCompletedEventSchema = defaults.StepCompletedEvent

/**
 * A discovery as opened: its id, for the parts and the commit, and when it expires unless a
 * part comes first (each part moves it on).
 */
export const DiscoverySchema = v.object({ discoveryId: v.string(), expiresAt: v.string() })

export const CandidateRunSchema = v.object({ status: RunStatusSchema })

export const CancelledAttemptSchema = v.object({
  runId: v.string(),
  candidateId: v.string(),
  cancelledAt: v.string(),
  /** The attempt that was cancelled (an addition to API 0.2). */
  attempt: v.optional(v.number()),
  /** Who cancelled it (an addition to API 0.2). */
  cancelledBy: v.optional(ActorSchema),
  /** Why, as the operator wrote it (an addition to API 0.2). */
  reason: v.optional(v.string()),
})

export const StatusCountsSchema = v.object({
  not_started: v.number(),
  queued: v.number(),
  running: v.number(),
  completed: v.number(),
  /**
   * Of the `not_started` candidates, those whose last attempt failed (`lastOutcome=failed`):
   * an addition to API 0.2, not a status, so the four statuses still add up to the total.
   */
  failed: v.number(),
})

/** How a candidate's last attempt ended when it is back at `not_started`. */
export const LAST_OUTCOMES = ['failed', 'rejected', 'cancelled', 'dequeued'] as const
export const LastOutcomeSchema = v.picklist(LAST_OUTCOMES, `must be one of ${LAST_OUTCOMES.join(', ')}`)

/**
 * The attempt a `not_started` candidate is back from: how it ended, when, who ended it (the
 * worker or operator whose report failed it, the operator who cancelled, dequeued or rejected
 * it, or Loom itself for a missed deadline), and the step, error and reason when there are.
 */
export const LastAttemptSchema = v.object({
  attempt: v.number(),
  outcome: LastOutcomeSchema,
  at: v.string(),
  by: ActorSchema,
  step: v.optional(v.string()),
  error: v.optional(v.string()),
  reason: v.optional(v.string()),
})

export const RegisteredMigrationSchema = v.object({
  id: SlugSchema,
  name: v.string(),
  description: v.optional(v.string()),
  candidates: v.array(CandidateSchema),
  steps: v.array(StepDefinitionSchema),
  createdAt: v.string(),
  workerUrl: v.optional(v.string()),
  /** The worker the migration belongs to: the first that announced it (an addition to API 0.2). */
  owner: v.optional(v.string()),
  cancelledAttempts: v.optional(v.array(CancelledAttemptSchema)),
  candidateRuns: v.optional(v.record(v.string(), CandidateRunSchema)),
  counts: v.optional(StatusCountsSchema),
})

/** The body of `POST /migrations/{id}/queue` and `/dry-run`: a candidate or its id. */
export const CandidateRefSchema = v.union(
  [v.object({ candidateId: SlugSchema }), v.object({ candidate: v.object({ id: SlugSchema }) })],
  'must have candidateId or candidate.id',
)

export const CandidateWithStatusSchema = v.object({
  ...CandidateSchema.entries,
  status: CandidateStatusSchema,
  runId: v.optional(v.string()),
  /** Set while `not_started` after an attempt: how that attempt ended (an addition to API 0.2). */
  lastAttempt: v.optional(LastAttemptSchema),
})

/** The largest `offset` of a candidate query (a 32-bit integer, what every store can page by). */
export const MAX_OFFSET = 2_147_483_647

export const CandidateQuerySchema = v.object({
  status: v.optional(CandidateStatusSchema),
  /** Only `not_started` candidates whose last attempt ended this way. */
  lastOutcome: v.optional(LastOutcomeSchema),
  q: v.optional(Text(500)),
  limit: v.optional(IntegerIn(1, 10_000)),
  offset: v.optional(IntegerIn(0, MAX_OFFSET)),
  /**
   * A cursor: the page starts after this candidate, in listing order (the id of the last
   * candidate of the previous page). It need not match the filters. Not with `offset`.
   */
  after: v.optional(SlugSchema),
})

/**
 * A step's reported outcome: the fields of the event that reported it but its attempt (a
 * run keeps the steps of its current attempt only, so results keep the API 0.2 shape).
 */
/** A step's outcome as a run keeps it: the report without its attempt (a run holds its current attempt's steps only). */
export const StepResultSchema = v.omit(StepCompletedEventSchema, ['attempt'])

export const RunInfoSchema = v.object({
  runId: v.string(),
  migrationId: v.string(),
  candidate: CandidateSchema,
  status: RunStatusSchema,
  steps: v.optional(v.array(StepResultSchema)),
})

export const MigrationResultSchema = v.object({
  migrationId: v.string(),
  status: v.picklist(['running', 'completed', 'failed']),
  results: v.array(StepResultSchema),
})

export const RunStatusResponseSchema = v.object({
  instanceId: v.string(),
  runtimeStatus: v.picklist(['RUNNING', 'COMPLETED', 'FAILED', 'CANCELED']),
  result: MigrationResultSchema,
})

export const DispatchStepRequestSchema = v.object({
  migrationId: SlugSchema,
  runId: v.string(),
  stepName: v.string(),
  candidate: CandidateSchema,
  config: v.optional(StringMapSchema),
  callbackId: v.string(),
  eventName: v.string(),
  /**
   * The run's attempt (an addition to API 0.2). A step dispatched twice with the same
   * attempt is the same work (Loom re-dispatches the step in flight after a restart); a
   * larger attempt is a new run of the same run id after a cancel or a failure. Workers
   * echo it in their reports (`StepCompletedEvent.attempt`).
   */
  attempt: v.optional(AttemptSchema),
})

/** The body of `POST /runs/{runId}/cancel` (an addition to API 0.2, which sends none). */
export const CancelOptionsSchema = v.pipe(
  v.object({ reason: v.optional(Text(MAX_REASON_LENGTH)) }, 'must be an object'),
  v.check((options) => !Array.isArray(options), 'must be an object'),
)

/** The body of `POST /runs/{runId}/execute` (an addition to API 0.2, which sends none). */
export const ExecuteOptionsSchema = v.pipe(
  v.object(
    {
      /** Carry over the steps that succeeded in the previous attempt and start at the step after them. */
      resume: v.optional(v.boolean('must be a boolean')),
    },
    'must be an object',
  ),
  v.check((options) => !Array.isArray(options), 'must be an object'),
)

export const DryRunRequestSchema = v.object({
  migrationId: SlugSchema,
  candidate: CandidateSchema,
  steps: v.array(StepDefinitionSchema),
})

export const DryRunFileSchema = v.object({
  path: v.string('must be a string'),
  repo: v.string('must be a string'),
  before: v.optional(v.string('must be a string')),
  after: v.string('must be a string'),
})

export const DryRunStepSchema = v.object({
  stepName: v.string('must be a string'),
  skipped: v.boolean('must be a boolean'),
  error: v.optional(v.string('must be a string')),
  files: v.optional(v.array(DryRunFileSchema, 'must be an array')),
})

export const DryRunResultSchema = v.object({ steps: v.array(DryRunStepSchema, 'must be an array') })

export const ErrorBodySchema = v.object({
  error: v.string(),
  code: v.picklist(LOOM_ERROR_CODES),
})

/** A cursor of the activity log: the id of the last entry read. */
const ActivityCursorSchema = v.pipe(
  v.string('must be a string'),
  v.regex(/^[0-9]{1,20}$/, 'must be a cursor from an earlier page (digits)'),
)

/** The query of `GET /migrations/{id}/activity`. */
export const ActivityQuerySchema = v.object({
  after: v.optional(ActivityCursorSchema),
  limit: v.optional(IntegerIn(1, MAX_ACTIVITY_PAGE)),
  /** `newest`: the latest `limit` entries (after `after`, when given), newest first, without `next`. Default `oldest`. */
  order: v.optional(v.picklist(['oldest', 'newest'], 'must be oldest or newest')),
})

export const ActivityEntrySchema = v.object({
  id: v.string(),
  at: v.string(),
  actor: ActorSchema,
  type: v.string(),
  migrationId: v.string(),
  runId: v.optional(v.string()),
  candidateId: v.optional(v.string()),
  attempt: v.optional(v.number()),
  detail: v.record(v.string(), v.unknown()),
})

/** A page of the activity log, oldest first; `next` is the cursor of the following page, when there may be one. */
export const ActivityPageSchema = v.object({ entries: v.array(ActivityEntrySchema), next: v.optional(v.string()) })

const StepHistorySchema = v.object({
  stepName: v.string(),
  dispatchedAt: v.optional(v.string()),
  reportedAt: v.optional(v.string()),
  reportedBy: v.optional(ActorSchema),
  success: v.optional(v.boolean()),
  done: v.boolean(),
  /** Milliseconds from dispatch to the final report. */
  durationMs: v.optional(v.number()),
  detail: v.record(v.string(), v.unknown()),
})

const AttemptHistorySchema = v.object({
  attempt: v.number(),
  /** Where the attempt stands or how it ended. */
  outcome: v.picklist(['queued', 'running', 'completed', 'failed', 'rejected', 'cancelled', 'dequeued']),
  queuedAt: v.string(),
  queuedBy: ActorSchema,
  startedAt: v.optional(v.string()),
  startedBy: v.optional(ActorSchema),
  endedAt: v.optional(v.string()),
  /** Who ended it: for a failure, who reported the step that failed (Loom itself for a missed deadline). */
  endedBy: v.optional(ActorSchema),
  /** Milliseconds from start to end. */
  durationMs: v.optional(v.number()),
  reason: v.optional(v.string()),
  steps: v.array(StepHistorySchema),
})

/** `GET /runs/{runId}/history`: every attempt of the candidate, oldest first. */
export const RunHistorySchema = v.object({
  runId: v.string(),
  migrationId: v.string(),
  candidateId: v.string(),
  attempts: v.array(AttemptHistorySchema),
})

export type Slug = v.InferOutput<typeof SlugSchema>
export type StringMap = v.InferOutput<typeof StringMapSchema>
export type CandidateStatus = v.InferOutput<typeof CandidateStatusSchema>
export type RunStatus = v.InferOutput<typeof RunStatusSchema>
export type FileRef = v.InferOutput<typeof FileRefSchema>
export type FileGroup = v.InferOutput<typeof FileGroupSchema>
export type Candidate = v.InferOutput<typeof CandidateSchema>
export type StepDefinition = v.InferOutput<typeof StepDefinitionSchema>
export type ExecuteOptions = v.InferOutput<typeof ExecuteOptionsSchema>
export type CancelOptions = v.InferOutput<typeof CancelOptionsSchema>
export type ActivityQueryInput = v.InferOutput<typeof ActivityQuerySchema>
export type ActivityPage = v.InferOutput<typeof ActivityPageSchema>
export type RunHistory = v.InferOutput<typeof RunHistorySchema>
export type AttemptHistory = v.InferOutput<typeof AttemptHistorySchema>
export type CandidateRun = v.InferOutput<typeof CandidateRunSchema>
export type CancelledAttempt = v.InferOutput<typeof CancelledAttemptSchema>
export type StatusCounts = v.InferOutput<typeof StatusCountsSchema>
export type LastOutcome = v.InferOutput<typeof LastOutcomeSchema>
export type LastAttempt = v.InferOutput<typeof LastAttemptSchema>
export type RegisteredMigration = v.InferOutput<typeof RegisteredMigrationSchema>
export type MigrationAnnouncement = v.InferOutput<typeof MigrationAnnouncementSchema>
export type RegisterMigrationRequest = v.InferOutput<typeof RegisterMigrationRequestSchema>
export type SubmitCandidatesRequest = v.InferOutput<typeof SubmitCandidatesRequestSchema>
export type PatchCandidatesRequest = v.InferOutput<typeof PatchCandidatesRequestSchema>
export type Discovery = v.InferOutput<typeof DiscoverySchema>
export type CandidateRef = v.InferOutput<typeof CandidateRefSchema>
export type CandidateWithStatus = v.InferOutput<typeof CandidateWithStatusSchema>
export type CandidateQuery = v.InferOutput<typeof CandidateQuerySchema>
export type StepCompletedEvent = v.InferOutput<typeof StepCompletedEventSchema>
export type StepResult = v.InferOutput<typeof StepResultSchema>
export type RunInfo = v.InferOutput<typeof RunInfoSchema>
export type MigrationResult = v.InferOutput<typeof MigrationResultSchema>
export type RunStatusResponse = v.InferOutput<typeof RunStatusResponseSchema>
export type DispatchStepRequest = v.InferOutput<typeof DispatchStepRequestSchema>
export type DryRunRequest = v.InferOutput<typeof DryRunRequestSchema>
export type DryRunFile = v.InferOutput<typeof DryRunFileSchema>
export type DryRunStep = v.InferOutput<typeof DryRunStepSchema>
export type DryRunResult = v.InferOutput<typeof DryRunResultSchema>
export type ErrorBody = v.InferOutput<typeof ErrorBodySchema>

const EventBase = {
  /** The id of the activity entry the event stands for (the SSE id, what `Last-Event-ID` resumes after). */
  id: v.optional(v.string()),
  migrationId: v.string(),
  at: v.string(),
  /** Who made the change. */
  actor: v.optional(ActorSchema),
}
const RunEventBase = { ...EventBase, runId: v.string(), candidateId: v.string(), attempt: v.optional(v.number()) }

/**
 * A change, as `Loom.subscribe` delivers it and `GET /events` streams it: a migration
 * announced, registered or deleted, candidates submitted, a candidate's status changed, a
 * step sent to its worker, or a step reported. Each is an entry of the activity log: every
 * change of every process sharing the store, in order. A step report's `result` carries the
 * candidate's id and the metadata the log keeps (`phase`, `error`, `prUrl`, `note`, `review`);
 * the run (`GET /runs/{runId}`) has the rest.
 */
export const LoomEventSchema = v.variant('type', [
  v.object({ type: v.literal('migration.updated'), ...EventBase }),
  v.object({ type: v.literal('migration.deleted'), ...EventBase }),
  v.object({ type: v.literal('candidates.submitted'), ...EventBase, count: v.number() }),
  /** Part of the list changed (`PATCH …/candidates`): how many candidates were upserted and named for removal. */
  v.object({ type: v.literal('candidates.patched'), ...EventBase, upserted: v.number(), removed: v.number() }),
  v.object({
    type: v.literal('run.status'),
    ...RunEventBase,
    status: CandidateStatusSchema,
    previous: CandidateStatusSchema,
  }),
  v.object({ type: v.literal('step.dispatched'), ...RunEventBase, step: v.number() }),
  v.object({ type: v.literal('step.reported'), ...RunEventBase, result: StepResultSchema, done: v.boolean() }),
])

export type LoomEvent = v.InferOutput<typeof LoomEventSchema>

/** Every `type` a `LoomEvent` can have. */
export const LOOM_EVENT_TYPES = [
  'migration.updated',
  'migration.deleted',
  'candidates.submitted',
  'candidates.patched',
  'run.status',
  'step.dispatched',
  'step.reported',
] as const satisfies readonly LoomEvent['type'][]

// A literal list rather than one read off the schema, so a browser bundle that needs only the
// names does not pull in valibot; the compiler keeps the two equal.
const everyEventType: Exclude<LoomEvent['type'], (typeof LOOM_EVENT_TYPES)[number]> extends never ? true : never = true
void everyEventType
