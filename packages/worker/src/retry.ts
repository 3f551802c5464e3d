import { LoomError } from '@loom/core'

/** How calls to Loom are retried when Loom cannot be reached. */
export interface RetryOptions {
  /** How many times a call is tried in all. Default 8. */
  attempts?: number
  /** Delay before the first retry, doubled for each further one. Default 250 ms. */
  initialDelayMs?: number
  /** Longest delay between two tries. Default 10 s. */
  maxDelayMs?: number
}

/**
 * True for failures that a later try may not meet: Loom unreachable (`unavailable`, or a
 * plain error from fetch), or, while an announce over MQTT is still on its way, the
 * migration not found yet. Everything else (`invalid`, `conflict`, `unauthorized`,
 * `forbidden`) is a final answer.
 */
export type RetryWhen = (error: unknown) => boolean

export const retryUnavailable: RetryWhen = (error) => !LoomError.is(error) || error.code === 'unavailable'

/** Waits `ms`, or less when `signal` aborts (then it rejects with the abort reason). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Calls `call` until it succeeds, `when` says its failure is final, the tries run out or
 * `signal` aborts; with exponential backoff and jitter between tries, so that many workers
 * restarted together do not call Loom in step. Rejects with the last failure.
 */
export async function withRetry<T>(
  call: () => Promise<T>,
  { attempts = 8, initialDelayMs = 250, maxDelayMs = 10_000 }: RetryOptions,
  signal: AbortSignal,
  when: RetryWhen = retryUnavailable,
): Promise<T> {
  const tries = Math.max(1, attempts)
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) throw signal.reason
    try {
      return await call()
    } catch (error) {
      if (attempt >= tries || !when(error) || signal.aborted) throw error
      const base = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1))
      await sleep(base / 2 + Math.random() * (base / 2), signal)
    }
  }
}
