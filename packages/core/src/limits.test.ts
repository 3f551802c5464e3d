import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { DEFAULT_LIMITS, readJson, topLevelStrings } from './limits'
import { localEngine } from './local-engine'
import { createLoom, type LoomInstance } from './loom/index'
import { memoryStore } from './memory-store'
import type { Candidate, MigrationAnnouncement } from './schemas'
import { announcement, expectLoomError, fakeWorker } from './testing/fakes'

/**
 * Every default limit, and the reserved map keys, refused through `createLoom` with `invalid`
 * naming the field and the limit, changing nothing; `readJson`'s refusals; limits raised and
 * lowered; and the issue's hostile announce of 1.4 M empty steps.
 */
const M = 'app-chart'

function setup(limits?: Parameters<typeof createLoom>[0]['limits']) {
  const worker = fakeWorker()
  const store = memoryStore()
  const loom = createLoom({
    store,
    engine: localEngine(),
    dispatcher: worker.dispatcher,
    dryRunner: worker.dryRunner,
    reconcile: false,
    ...(limits ? { limits } : {}),
  })
  return { loom, store }
}

/** Everything a refused call could have changed. */
async function stateOf(loom: LoomInstance) {
  const migrations = await loom.listMigrations()
  const candidates = await Promise.all(migrations.map((m) => loom.listCandidates(m.id)))
  return { migrations, candidates }
}

/** A map of `n` keys `k0 … k(n-1)`. */
const mapOf = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']))

/** A map holding `key` as its own property: a literal `{ __proto__: … }` would set the prototype instead. */
const withKey = (key: string): Record<string, string> => JSON.parse(`{"team":"payments",${JSON.stringify(key)}:"x"}`)

const stepsOf = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `step-${i}`, workerApp: 'charts' }))

const withStep = (patch: Record<string, unknown>): MigrationAnnouncement => {
  const a = announcement('other')
  return { ...a, steps: [{ ...a.steps[0]!, ...patch }, ...a.steps.slice(1)] }
}

interface Case {
  name: string
  call: (loom: LoomInstance) => Promise<unknown>
  field: string
  says: string
}

const filesOf = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `f${i}.yaml`, url: '' }))

const cases: Case[] = [
  {
    name: `${DEFAULT_LIMITS.steps + 1} steps`,
    call: (loom) => loom.announce({ ...announcement('other'), steps: stepsOf(101) }),
    field: 'steps',
    says: '101 steps are more than the limit of 100 (limits.steps)',
  },
  {
    name: `${DEFAULT_LIMITS.steps + 1} steps in a registration`,
    call: (loom) => loom.register({ name: 'Other', steps: stepsOf(101), candidates: [] }),
    field: 'steps',
    says: '101 steps are more than the limit of 100 (limits.steps)',
  },
  {
    name: `${DEFAULT_LIMITS.candidates + 1} candidates submitted`,
    // Empty objects: the list is measured before any item is judged, so none needs an id.
    call: (loom) =>
      loom.submitCandidates(
        M,
        Array.from({ length: 100_001 }, () => ({}) as Candidate),
      ),
    field: 'candidates',
    says: '100001 candidates are more than the limit of 100000 (limits.candidates)',
  },
  {
    name: `${DEFAULT_LIMITS.candidates + 1} candidates announced`,
    call: (loom) => loom.announce({ ...announcement('other'), candidates: Array.from({ length: 100_001 }, () => ({}) as Candidate) }),
    field: 'candidates',
    says: '100001 candidates are more than the limit of 100000 (limits.candidates)',
  },
  ...(['metadata', 'state'] as const).flatMap((map): Case[] => [
    {
      name: `${DEFAULT_LIMITS.mapKeys + 1} keys of a candidate's ${map}`,
      call: (loom) => loom.submitCandidates(M, [{ id: 'svc-1', [map]: mapOf(101) }]),
      field: `candidates.0.${map}`,
      says: '101 keys are more than the limit of 100 (limits.mapKeys)',
    },
    {
      name: `a value of ${DEFAULT_LIMITS.valueLength + 1} characters in a candidate's ${map}`,
      call: (loom) => loom.submitCandidates(M, [{ id: 'svc-1', [map]: { note: 'x'.repeat(10_001) } }]),
      field: `candidates.0.${map}.note`,
      says: 'must be at most 10000 characters (limits.valueLength)',
    },
  ]),
  {
    name: `${DEFAULT_LIMITS.mapKeys + 1} keys of a step's config`,
    call: (loom) => loom.announce(withStep({ config: mapOf(101) })),
    field: 'steps.0.config',
    says: '101 keys are more than the limit of 100 (limits.mapKeys)',
  },
  {
    name: `${DEFAULT_LIMITS.mapKeys + 1} keys of a report's metadata`,
    call: (loom) =>
      loom.complete(`${M}__svc-0`, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true, metadata: mapOf(101) }),
    field: 'metadata',
    says: '101 keys are more than the limit of 100 (limits.mapKeys)',
  },
  {
    name: `${DEFAULT_LIMITS.files + 1} file groups of a candidate`,
    call: (loom) =>
      loom.submitCandidates(M, [
        { id: 'svc-1', files: Array.from({ length: 1_001 }, (_, i) => ({ name: `g${i}`, repo: 'r', files: [] })) },
      ]),
    field: 'candidates.0.files',
    says: '1001 file groups are more than the limit of 1000 (limits.files)',
  },
  {
    name: `${DEFAULT_LIMITS.files + 1} files of a group`,
    call: (loom) => loom.submitCandidates(M, [{ id: 'svc-1', files: [{ name: 'g', repo: 'r', files: filesOf(1_001) }] }]),
    field: 'candidates.0.files.0.files',
    says: '1001 files are more than the limit of 1000 (limits.files)',
  },
  {
    name: `${DEFAULT_LIMITS.files + 1} files of a step`,
    call: (loom) => loom.announce(withStep({ files: Array.from({ length: 1_001 }, (_, i) => `f${i}.yaml`) })),
    field: 'steps.0.files',
    says: '1001 files are more than the limit of 1000 (limits.files)',
  },
  // Reserved keys: refused by name, never dropped.
  ...(['__proto__', 'constructor', 'prototype'] as const).flatMap((key): Case[] => [
    ...(['metadata', 'state'] as const).map(
      (map): Case => ({
        name: `"${key}" in a candidate's ${map}`,
        call: (loom) => loom.submitCandidates(M, [{ id: 'svc-1', [map]: withKey(key) }]),
        field: `candidates.0.${map}`,
        says: `"${key}" is a reserved key`,
      }),
    ),
    {
      name: `"${key}" in an announced candidate's metadata`,
      call: (loom) => loom.announce({ ...announcement('other'), candidates: [{ id: 'svc-1', metadata: withKey(key) }] }),
      field: 'candidates.0.metadata',
      says: `"${key}" is a reserved key`,
    },
    {
      name: `"${key}" in a step's config`,
      call: (loom) => loom.announce(withStep({ config: withKey(key) })),
      field: 'steps.0.config',
      says: `"${key}" is a reserved key`,
    },
  ]),
]

describe('the default limits, through createLoom', () => {
  it.each(cases)('refuses $name with invalid naming $field, changing nothing', async ({ call, field, says }) => {
    const { loom } = setup()
    await loom.announce(announcement(M, { candidates: [{ id: 'svc-0', metadata: { team: 'payments' } }] }))
    const before = await stateOf(loom)
    const error = await expectLoomError(call(loom), 'invalid')
    expect(error.details?.field).toBe(field)
    expect(error.message).toBe(`${field}: ${error.message.slice(field.length + 2)}`)
    expect(error.message).toContain(says)
    expect(await stateOf(loom)).toEqual(before)
  })

  it('takes each limit exactly: 100 steps, 100 keys, values of 10,000 characters, 1,000 files', async () => {
    const { loom } = setup()
    await loom.announce({ ...announcement(M), steps: stepsOf(100) })
    await loom.submitCandidates(M, [
      {
        id: 'svc-1',
        metadata: mapOf(100),
        state: { note: 'x'.repeat(10_000) },
        files: [{ name: 'g', repo: 'r', files: filesOf(1_000) }],
      },
    ])
    const stored = await loom.getCandidate(M, 'svc-1')
    expect(Object.keys(stored.metadata ?? {})).toHaveLength(100)
    expect(stored.state?.note).toHaveLength(10_000)
    expect(stored.files?.[0]?.files).toHaveLength(1_000)
  })
})

describe('createLoom({ limits })', () => {
  it('holds requests to the limits it is given, naming them', async () => {
    const { loom } = setup({ steps: 5 })
    expect(loom.limits).toEqual({ ...DEFAULT_LIMITS, steps: 5 })
    const error = await expectLoomError(loom.announce({ ...announcement(M), steps: stepsOf(6) }), 'invalid')
    expect(error.details?.field).toBe('steps')
    expect(error.message).toBe('steps: 6 steps are more than the limit of 5 (limits.steps)')
    expect(await loom.listMigrations()).toEqual([])
    await loom.announce({ ...announcement(M), steps: stepsOf(5) })
    expect((await loom.getMigration(M)).steps).toHaveLength(5)
  })

  it.each([0, -1, 1.5, Number.NaN])('refuses a limit of %s at once, naming it', (value) => {
    let caught: unknown
    try {
      setup({ mapKeys: value })
    } catch (error) {
      caught = error
    }
    expect(LoomError.is(caught, 'invalid')).toBe(true)
    expect((caught as LoomError).details?.field).toBe('limits.mapKeys')
    expect((caught as LoomError).message).toBe(`limits.mapKeys: must be a positive integer (got ${value})`)
  })
})

describe('readJson', () => {
  const bytes = (...values: number[]) => new Uint8Array(values)
  const quoted = (...inner: number[]) => bytes(0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, ...inner, 0x22, 0x7d) // {"a":"…"}

  it.each([
    ['a stray continuation byte', quoted(0x80)],
    ['0xFF', quoted(0xff)],
    ['an overlong "/"', quoted(0xc0, 0xaf)],
    ['a lone surrogate', quoted(0xed, 0xa0, 0x80)],
    ['a truncated sequence', quoted(0xe2, 0x82)],
  ])('refuses bytes that are not UTF-8 (%s), never replacing them', (_, input) => {
    expect(catchOf(() => readJson(input, 32))).toMatchObject({ code: 'invalid', message: 'body: is not valid UTF-8' })
    const error = catchOf(() => readJson(input, 32, 'payload'))
    expect(error.message).toBe('payload: is not valid UTF-8')
    expect(error.details).toEqual({ field: 'payload' })
  })

  it('reads UTF-8 byte for byte', () => {
    expect(readJson(new TextEncoder().encode('{"team":"Zürich ✓ 𝄞"}'), 32)).toEqual({ team: 'Zürich ✓ 𝄞' })
  })

  it('refuses nesting deeper than the limit, counting objects and arrays but not brackets in strings', () => {
    const nested = (n: number) => `${'['.repeat(n - 1)}{"a":1}${']'.repeat(n - 1)}`
    expect(readJson(nested(32), 32)).toBeDefined()
    const error = catchOf(() => readJson(nested(33), 32))
    expect(error.code).toBe('invalid')
    expect(error.message).toBe('body: nested deeper than the limit of 32 (limits.depth)')
    expect(error.details).toEqual({ field: 'body' })
    expect(catchOf(() => readJson(nested(6), 5)).message).toBe('body: nested deeper than the limit of 5 (limits.depth)')
    expect(readJson(`{"a":"${'[{'.repeat(50)}\\"${'['.repeat(50)}"}`, 2)).toEqual({ a: `${'[{'.repeat(50)}"${'['.repeat(50)}` })
  })

  it.each(['{"id": "x",', '', 'id=x', '{"a":1}}'])('refuses malformed JSON %j naming the field', (text) => {
    const error = catchOf(() => readJson(text, 32, 'message'))
    expect(error.code).toBe('invalid')
    expect(error.message).toMatch(/^message: malformed JSON \(/)
    expect(error.details).toEqual({ field: 'message' })
  })
})

describe('the issue’s hostile announce', () => {
  it('refuses 1.4 M empty steps (4 MiB of JSON) for their number, without judging one of them', async () => {
    const { loom } = setup()
    const count = 1_398_000
    const body = new TextEncoder().encode(`{"id":"x","name":"x","steps":[${'{},'.repeat(count - 1)}{}]}`)
    expect(body.length).toBeGreaterThan(4_000_000)
    expect(body.length).toBeLessThanOrEqual(4 * 1024 * 1024)

    // On the wire: the one-pass scan refuses the list for its length before anything is parsed.
    let started = performance.now()
    const scanned = catchOf(() => readJson(body, DEFAULT_LIMITS))
    const readMs = performance.now() - started
    expect(scanned).toMatchObject({
      code: 'invalid',
      message: 'steps: more than the limit of 100 steps (limits.steps)',
      details: { field: 'steps' },
    })

    // In process: the list is measured before one step is judged.
    const value = { id: 'x', name: 'x', steps: Array.from({ length: count }, () => ({})) }
    started = performance.now()
    const error = await expectLoomError(loom.announce(value as unknown as MigrationAnnouncement), 'invalid')
    const judgedMs = performance.now() - started

    console.info(
      `1.4 M steps, ${body.length} bytes: refused by readJson in ${readMs.toFixed(1)} ms, by the schema in ${judgedMs.toFixed(1)} ms`,
    )
    expect(error.message).toBe(`steps: ${count} steps are more than the limit of 100 (limits.steps)`)
    expect(error.details).toMatchObject({ field: 'steps', issues: [{ field: 'steps', message: expect.any(String) }] })
    expect(judgedMs).toBeLessThan(1_000)
    expect(readMs).toBeLessThan(1_000)
    expect(await loom.listMigrations()).toEqual([])
  })
})

function catchOf(run: () => unknown): LoomError {
  try {
    run()
  } catch (error) {
    if (LoomError.is(error)) return error
    throw error
  }
  throw new Error('expected a LoomError')
}

describe('readJson measuring lists', () => {
  const limits = { ...DEFAULT_LIMITS, steps: 2, candidates: 3, files: 1 }
  it('holds steps, candidates and files to their own limits wherever they are, naming the path', () => {
    expect(readJson('{"steps":[{},{}]}', limits)).toEqual({ steps: [{}, {}] })
    expect(catchOf(() => readJson('{"steps":[{},{},{}]}', limits)).message).toBe('steps: more than the limit of 2 steps (limits.steps)')
    expect(catchOf(() => readJson('{"data":{"steps":[1,2,3]}}', limits)).details).toEqual({ field: 'data.steps' })
    const files = '{"candidates":[{"id":"a"},{"id":"b","files":[{"name":"x"},{"name":"y"}]}]}'
    expect(catchOf(() => readJson(files, limits)).message).toBe('candidates.1.files: more than the limit of 1 files (limits.files)')
    expect(catchOf(() => readJson('{"candidates":[1,2,3,4]}', limits)).message).toBe(
      'candidates: more than the limit of 3 candidates (limits.candidates)',
    )
  })

  it('holds any other list to the largest limit, and ignores brackets and commas inside strings', () => {
    expect(catchOf(() => readJson('{"other":[1,2,3,4]}', limits)).message).toBe('other: more than the limit of 3 items (limits.candidates)')
    expect(readJson('{"steps":["a,b,c,d", "[1,2,3]"], "k\\",":"[,,,]"}', limits)).toEqual({ steps: ['a,b,c,d', '[1,2,3]'], 'k",': '[,,,]' })
    expect(readJson('{"steps":[], "constructor":[1,2,3], "x":[[],[]]}', limits)).toEqual({ steps: [], constructor: [1, 2, 3], x: [[], []] })
    expect(catchOf(() => readJson('[1,2,3,4]', limits, 'message')).message).toBe(
      'message: more than the limit of 3 items (limits.candidates)',
    )
  })
})

describe('topLevelStrings', () => {
  it('finds the string values of top-level keys without reading the rest', () => {
    const text = `{"steps":[${'{"replyTo":"nested"},'.repeat(3)}{}],"meta":{"token":"inner"},"replyTo":"loom/replies/a\\u0062","token":"t-1","correlationId":7}`
    expect(topLevelStrings(text, ['replyTo', 'token', 'correlationId'])).toEqual({ replyTo: 'loom/replies/ab', token: 't-1' })
    expect(topLevelStrings('{"a":"replyTo","replyTo":"x"}', ['replyTo'])).toEqual({ replyTo: 'x' })
    expect(topLevelStrings('{"k\\"":"v","constructor":"c"}', ['k"', 'constructor'])).toEqual({ 'k"': 'v', constructor: 'c' })
    expect(topLevelStrings('[{"replyTo":"x"}]', ['replyTo'])).toEqual({})
    expect(topLevelStrings(new Uint8Array([0x7b, 0xff, 0x7d]), ['replyTo'])).toEqual({})
  })
})

describe('readJson, as the review of issue 13 tried it', () => {
  it('judges a key written with escapes by what it says', () => {
    const limits = { ...DEFAULT_LIMITS, steps: 2 }
    expect(catchOf(() => readJson('{"st\\u0065ps":[{},{},{}]}', limits)).message).toBe(
      'steps: more than the limit of 2 steps (limits.steps)',
    )
  })

  it('holds an object to the most keys a map may have plus a shape’s fields', () => {
    const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":1`).join(',')}}`
    expect(readJson(keys(DEFAULT_LIMITS.mapKeys + 16), DEFAULT_LIMITS)).toBeDefined()
    expect(catchOf(() => readJson(`{"x":${keys(DEFAULT_LIMITS.mapKeys + 17)}}`, DEFAULT_LIMITS))).toMatchObject({
      message: 'x: more than the limit of 116 keys (limits.mapKeys)',
      details: { field: 'x' },
    })
  })

  it('stops at the first wrong value: a million of them cost what one does', async () => {
    const { loom } = setup()
    const metadata = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [String(i), 1]))
    const list = Array.from({ length: 5_000 }, (_, i) => ({ id: `c${i}`, metadata }))
    await loom.announce({ id: 'x', name: 'x', steps: [{ name: 's', workerApp: 'w' }] })
    const started = performance.now()
    const error = await expectLoomError(loom.submitCandidates('x', list as never), 'invalid')
    const ms = performance.now() - started
    console.info(`500,000 wrong metadata values refused in ${ms.toFixed(1)} ms`)
    expect(error.message).toBe('candidates.0.metadata.0: must be a string')
    expect(ms).toBeLessThan(500)
  })
})
