/**
 * A TCP proxy in front of PostgreSQL that a test cuts and restores: the network between
 * Loom and its database failing, without touching the machine's database server.
 */
import { createServer, type Server, Socket } from 'node:net'

/** How new connections fare while the proxy is cut: closed at once, or accepted and never answered (a dead network). */
type CutMode = 'refuse' | 'blackhole'

export interface TcpProxy {
  readonly port: number
  /** Destroys every connection through the proxy; new ones are refused or blackholed until `restore`. */
  cut(mode: CutMode): void
  /** Forwards new connections again (blackholed ones are closed, so their clients reconnect). */
  restore(): void
  /** How many connections are forwarded now. */
  open(): number
  close(): Promise<void>
}

export async function tcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: CutMode | undefined
  const pairs = new Set<[Socket, Socket]>()
  const held = new Set<Socket>()

  const server: Server = createServer((client) => {
    client.on('error', () => {})
    if (mode === 'refuse') return void client.destroy()
    if (mode === 'blackhole') {
      held.add(client)
      client.pause()
      client.on('close', () => held.delete(client))
      return
    }
    const upstream = new Socket()
    upstream.on('error', () => {})
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    upstream.connect(target.port, target.host, () => {
      client.pipe(upstream)
      upstream.pipe(client)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('proxy: no port')

  const proxy: TcpProxy = {
    port: address.port,
    cut(next) {
      mode = next
      for (const [client, upstream] of [...pairs]) {
        // A reset, not a clean close: what a client sees when the network or the server goes away.
        if (client.destroyed) continue
        client.resetAndDestroy()
        upstream.destroy()
      }
      pairs.clear()
    },
    restore() {
      mode = undefined
      for (const socket of [...held]) socket.destroy()
      held.clear()
    },
    open: () => pairs.size,
    async close() {
      proxy.cut('refuse')
      proxy.restore()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return proxy
}
