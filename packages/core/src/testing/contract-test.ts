import { it, type TestFunction, type TestOptions } from 'vitest'

/** What every contract suite accepts besides its factory. */
export interface ContractOptions {
  /**
   * Tests this implementation is excused from, by test name, each with the reason written
   * down (it shows in the test's title). A name that matches no test of the suite fails the
   * suite, so an excuse cannot outlive the test it excused.
   */
  skip?: Record<string, string>
}

/**
 * The `it` of a contract suite: a test named in `options.skip` is registered as skipped with
 * its reason; `done()`, called once after the suite's tests are registered, adds a test that
 * fails when a skip names no test.
 */
export function contractTests(suite: string, options: ContractOptions = {}) {
  const skip = options.skip ?? {}
  const unused = new Set(Object.keys(skip))
  const test = (name: string, optionsOrFn: TestOptions | TestFunction, fn?: TestFunction) => {
    const [testOptions, body] = typeof optionsOrFn === 'function' ? [{}, optionsOrFn] : [optionsOrFn, fn!]
    const reason = skip[name]
    if (reason === undefined) return it(name, testOptions, body)
    unused.delete(name)
    return it(`${name} — skipped for ${suite}: ${reason}`, { ...testOptions, skip: true }, body)
  }
  const done = () =>
    it('skips only tests the suite has', () => {
      if (unused.size > 0) throw new Error(`skip names no test of this suite: ${[...unused].join('; ')}`)
    })
  return { test, done }
}
