/**
 * One Temporal server for the whole `temporal` test project. `TEMPORAL_ADDRESS` names a
 * running server to use; otherwise a dev server is started on 127.0.0.1 from a `temporal`
 * binary (`TEMPORAL_CLI_PATH`, `temporal` on PATH, or pip's scripts folder), or from the
 * download of `@temporalio/testing`. When none of those is possible the run fails and says
 * how to provide the binary: these tests never pass without a real server.
 */
import type { TestProject } from 'vitest/node'
import { startTemporal } from './support/server'

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string
  }
}

export default async function setup(project: TestProject) {
  const server = await startTemporal()
  project.provide('temporalAddress', server.address)
  return () => server.stop()
}
