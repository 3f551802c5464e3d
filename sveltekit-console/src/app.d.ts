import type { Loom } from '@loom/core'

declare global {
  namespace App {
    interface Locals {
      loom: Loom
      /** True when the console needs a token (`LOOM_TOKEN`) and this request carries a valid session. */
      signedIn: boolean
      authRequired: boolean
      theme: 'dark' | 'light'
    }
    interface Error {
      message: string
      code?: string
    }
  }
}
