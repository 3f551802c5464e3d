/** One message of a server-sent-events stream, as the EventSource spec assembles it. */
export interface SseMessage {
  event: string
  data: string
  id: string | undefined
  retry: number | undefined
}

/**
 * Reads a `text/event-stream` body into messages (the EventSource parsing rules, without
 * EventSource: it is missing on Node 20 and cannot send an Authorization header).
 * `onComment` is given each comment line's text (`: connected` gives `connected`).
 */
export async function* readEventStream(body: ReadableStream<Uint8Array>, onComment?: (text: string) => void): AsyncGenerator<SseMessage> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let data: string[] = []
  let event = ''
  let id: string | undefined
  let retry: number | undefined
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      // A line may end in \r\n, \n or \r; a lone trailing \r may be the first half of \r\n.
      let match: RegExpExecArray | null
      const eol = /\r\n|\n|\r(?!$)/g
      let start = 0
      while ((match = eol.exec(buffer))) {
        const line = buffer.slice(start, match.index)
        start = eol.lastIndex
        if (line === '') {
          if (data.length > 0 || retry !== undefined) yield { event: event || 'message', data: data.join('\n'), id, retry }
          data = []
          event = ''
          retry = undefined
          continue
        }
        if (line.startsWith(':')) {
          onComment?.(line.slice(1).trimStart())
          continue
        }
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        let content = colon < 0 ? '' : line.slice(colon + 1)
        if (content.startsWith(' ')) content = content.slice(1)
        if (field === 'data') data.push(content)
        else if (field === 'event') event = content
        else if (field === 'id' && !content.includes('\0')) id = content
        else if (field === 'retry' && /^\d+$/.test(content)) retry = Number(content)
      }
      buffer = buffer.slice(start)
    }
  } finally {
    // Also reached when the consumer stops early: release the connection.
    await reader.cancel().catch(() => {})
  }
}
