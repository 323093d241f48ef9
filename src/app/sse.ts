/**
 * Server-sent events read from a fetch body (EventSource cannot POST or send headers, and the prompt box must
 * do both). Parsing follows the HTML spec's event-stream rules: lines end in LF, CRLF or CR; a blank line
 * dispatches; `data` lines join with LF; `:` starts a comment; one space after the colon is dropped.
 */

export interface SseEvent {
  /** `message` when the stream names none. */
  event: string;
  data: string;
  id?: string;
}

/** Feed it text as it arrives (chunks may split lines anywhere, a CRLF included); it returns whole events. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;

  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A CR at the very end may be the first half of a CRLF still in flight: wait for the next chunk.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const e = this.line(line);
      if (e) out.push(e);
    }
    return out;
  }

  /** The end of the stream: an event not closed by a blank line is dropped, as the spec says. */
  end(): void {
    this.buffer = '';
    this.data = [];
    this.event = '';
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = '';
        return undefined;
      }
      const e: SseEvent = {
        event: this.event || 'message',
        data: this.data.join('\n'),
        ...(this.id !== undefined ? { id: this.id } : {}),
      };
      this.data = [];
      this.event = '';
      return e;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    return undefined;
  }
}

/** Every event of a fetch response body, as it streams. */
export async function* readSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<SseEvent> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
      const { done, value } = await reader.read();
      if (done) {
        yield* parser.push(decoder.decode());
        break;
      }
      // stream: true keeps a UTF-8 character split across chunks whole.
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    parser.end();
    // Stops the download when the reader gives up early (Stop button, unmount); harmless after the end.
    await reader.cancel().catch(() => {});
  }
}
