/**
 * A Mosquitto of the test's own on a free port of 127.0.0.1 (never the machine's 1883), with a
 * minimal config in a temp dir, that the test stops by PID and starts again on the same port
 * (the fault "broker restarted"). It keeps nothing across restarts: no persistence.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, listening, pollUntil, spawnOwned, stopByPid, type OwnedProcess } from './processes'

export interface RestartableMosquitto {
  readonly url: string
  readonly port: number
  pid(): number | undefined
  stop(graceMs?: number): Promise<'exited' | 'SIGTERM' | 'SIGKILL'>
  /** Starts it on the same port; resolves once it accepts connections. */
  start(): Promise<void>
  close(): Promise<void>
}

const BINARY = process.env.MOSQUITTO_PATH ?? '/usr/sbin/mosquitto'

export async function startRestartableMosquitto(): Promise<RestartableMosquitto> {
  if (!existsSync(BINARY)) throw new Error(`no Mosquitto at ${BINARY}: apt-get install -y mosquitto, or set MOSQUITTO_PATH`)
  const port = await freePort()
  if (port === 1883) throw new Error('refusing to run a test broker on 1883, the machine’s own')
  const dir = mkdtempSync(join(tmpdir(), 'loom-faults-mosquitto-'))
  const config = join(dir, 'mosquitto.conf')
  writeFileSync(
    config,
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', 'log_type error', ''].join('\n'),
  )
  let current: OwnedProcess | undefined
  const broker: RestartableMosquitto = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: () => (current && !current.exited() ? current.pid : undefined),
    async stop(graceMs = 5_000) {
      if (!current) return 'exited'
      const how = await stopByPid(current, graceMs)
      current = undefined
      return how
    },
    async start() {
      if (current && !current.exited()) throw new Error(`the test broker on ${port} is still running (pid ${current.pid})`)
      const owned = spawnOwned(BINARY, ['-c', config], { cwd: dir })
      current = owned
      if (
        !(await pollUntil(
          () => listening(port),
          10_000,
          () => owned.exited(),
        ))
      ) {
        throw new Error(`Mosquitto on ${port} ${owned.exited() ? 'exited' : 'did not listen within 10 s'}: ${owned.output()}`)
      }
    },
    async close() {
      await broker.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await broker.start()
  return broker
}
