import type { Actor, Loom } from '@loom/core'

declare global {
  namespace App {
    interface Locals {
      /** The Loom as this request's operator: every call held to their role and recorded as theirs. */
      loom: Loom
      /** Who this request acts for: the signed-in operator, the anonymous operator of an open console, or null (signed out). */
      actor: Actor | null
      /** True when this request carries a live session (or the console is open). */
      signedIn: boolean
      /** True when the console needs a token (any of LOOM_TOKEN, LOOM_OPERATORS, LOOM_WORKER_TOKEN, LOOM_WORKERS is set). */
      authRequired: boolean
      theme: 'dark' | 'light'
    }
    interface Error {
      message: string
      code?: string
    }
  }
}
