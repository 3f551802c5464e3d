/**
 * A Mosquitto of the test's own on a free port of 127.0.0.1 (never the machine's 1883), with a
 * minimal config in a temp dir, that the test stops by PID and starts again on the same port
 * (the fault "broker restarted"). It keeps nothing across restarts: no persistence.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, listening, restartable } from './processes'

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
  const child = restartable({
    name: `the test broker on ${port}`,
    command: BINARY,
    args: ['-c', config],
    cwd: dir,
    ready: () => listening(port),
    readyWithinMs: 10_000,
  })
  const broker: RestartableMosquitto = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    ...child,
    async close() {
      await broker.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await broker.start()
  return broker
}
