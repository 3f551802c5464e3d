const encoder = new TextEncoder()

/**
 * Whether a received secret (a bearer token, a token in a message, a session proof) equals
 * the expected one, in time that does not depend on where they differ, so it cannot be
 * guessed byte by byte from response times. Web-standard and synchronous, for every place
 * Loom checks a secret: the HTTP API, a worker's endpoints, MQTT messages, the console.
 *
 * @example
 * if (!tokensMatch(request.headers.get('x-token') ?? undefined, expected)) throw new LoomError('unauthorized', '…')
 */
export function tokensMatch(received: string | undefined, expected: string): boolean {
  const a = encoder.encode(received ?? '')
  const b = encoder.encode(expected)
  // Every byte of the expected secret is compared, whatever the length of the received one.
  let difference = a.length ^ b.length
  for (let i = 0; i < b.length; i++) difference |= (a[i % Math.max(a.length, 1)] ?? 0) ^ b[i]!
  return received !== undefined && difference === 0
}
