// A run's event log over GET /api/runs/{id}/events/ws?after=N (hub.md §7). The Hub replays every
// event with seq > after and then forwards live ones. When the socket drops, the stream reconnects
// with after = the last seq it delivered, and drops anything at or below that seq, so a consumer sees
// each event exactly once and in order, whatever the network did.
import type { RunEvent } from '@/api/types'

export interface SocketLike {
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number; reason?: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
  close(code?: number, reason?: string): void
}

export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'ended' | 'stopped'

export interface EventStreamDeps {
  /** Opens a socket that replays events with seq > after. */
  connect: (after: number) => SocketLike
  setTimer: (fn: () => void, ms: number) => unknown
  clearTimer: (handle: unknown) => void
}

export interface EventStreamOptions {
  after?: number
  onEvent: (ev: RunEvent) => void
  onState?: (s: StreamState) => void
  /** Backoff between reconnects: starts here, doubles, capped at maxDelayMs. */
  minDelayMs?: number
  maxDelayMs?: number
}

// 1000 is the Hub's normal close once the run is over and nothing new came; 1008 closes a socket
// whose session or API token ended (a reconnect would be refused; the app's next request takes
// the user to the login page). Anything else (1006 a dropped connection, 1001 a restarting Hub,
// 1011 a server error) is worth a reconnect.
const NORMAL_CLOSURE = 1000
const SIGNED_OUT = 1008

export class RunEventStream {
  private lastSeq: number
  private socket: SocketLike | null = null
  private timer: unknown = null
  private delay: number
  private state: StreamState = 'stopped'
  private readonly minDelay: number
  private readonly maxDelay: number

  constructor(
    private readonly deps: EventStreamDeps,
    private readonly opts: EventStreamOptions,
  ) {
    this.lastSeq = opts.after ?? 0
    this.minDelay = opts.minDelayMs ?? 500
    this.maxDelay = opts.maxDelayMs ?? 10_000
    this.delay = this.minDelay
  }

  get seq(): number {
    return this.lastSeq
  }

  get current(): StreamState {
    return this.state
  }

  start(): void {
    if (this.state !== 'stopped') return
    this.open('connecting')
  }

  stop(): void {
    this.setState('stopped')
    this.clearPending()
    const s = this.socket
    this.socket = null
    if (s) {
      s.onclose = null
      s.onmessage = null
      s.onerror = null
      s.onopen = null
      s.close(NORMAL_CLOSURE, 'client stop')
    }
  }

  private setState(s: StreamState): void {
    if (this.state === s) return
    this.state = s
    this.opts.onState?.(s)
  }

  private clearPending(): void {
    if (this.timer !== null) {
      this.deps.clearTimer(this.timer)
      this.timer = null
    }
  }

  private open(state: StreamState): void {
    this.setState(state)
    let sock: SocketLike
    try {
      sock = this.deps.connect(this.lastSeq)
    } catch {
      this.scheduleReconnect()
      return
    }
    this.socket = sock
    sock.onopen = () => {
      if (this.socket !== sock) return
      this.setState('open')
    }
    sock.onmessage = (ev) => {
      if (this.socket !== sock) return
      this.handle(ev.data)
    }
    sock.onerror = () => {
      // A close always follows an error; reconnecting is decided there.
    }
    sock.onclose = (ev) => {
      if (this.socket !== sock) return
      this.socket = null
      if (ev.code === NORMAL_CLOSURE || ev.code === SIGNED_OUT) {
        this.setState('ended')
        return
      }
      this.scheduleReconnect()
    }
  }

  private scheduleReconnect(): void {
    if (this.state === 'stopped') return
    this.setState('reconnecting')
    const wait = this.delay
    this.delay = Math.min(this.delay * 2, this.maxDelay)
    this.clearPending()
    this.timer = this.deps.setTimer(() => {
      this.timer = null
      if (this.state === 'reconnecting') this.open('reconnecting')
    }, wait)
  }

  /** Parses one message; exposed for tests through the socket's onmessage. */
  private handle(data: unknown): void {
    if (typeof data !== 'string') return
    let ev: RunEvent
    try {
      ev = JSON.parse(data) as RunEvent
    } catch {
      return
    }
    if (typeof ev !== 'object' || ev === null || typeof ev.seq !== 'number') return
    if (ev.seq <= this.lastSeq) return
    this.lastSeq = ev.seq
    this.delay = this.minDelay // a healthy connection resets the backoff
    this.opts.onEvent(ev)
  }
}

/** The URL of a same-origin WebSocket path, ws:// or wss:// after the page's own scheme. */
export function socketUrl(path: string, loc: Pick<Location, 'protocol' | 'host'> = window.location): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${loc.host}${path}`
}

export function browserDeps(pathFor: (after: number) => string): EventStreamDeps {
  return {
    connect: (after) => new WebSocket(socketUrl(pathFor(after))) as unknown as SocketLike,
    setTimer: (fn, ms) => window.setTimeout(fn, ms),
    clearTimer: (h) => window.clearTimeout(h as number),
  }
}
