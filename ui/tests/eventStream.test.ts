import { describe, expect, it } from 'vitest'
import { RunEventStream, socketUrl, type SocketLike, type StreamState } from '@/lib/eventStream'
import type { RunEvent } from '@/api/types'

class FakeSocket implements SocketLike {
  onopen: SocketLike['onopen'] = null
  onmessage: SocketLike['onmessage'] = null
  onclose: SocketLike['onclose'] = null
  onerror: SocketLike['onerror'] = null
  closed = false
  constructor(readonly after: number) {}
  close() {
    this.closed = true
  }
  open() {
    this.onopen?.({})
  }
  send(ev: Partial<RunEvent> | string) {
    this.onmessage?.({ data: typeof ev === 'string' ? ev : JSON.stringify(ev) })
  }
  drop(code = 1006) {
    this.onclose?.({ code })
  }
}

function setup() {
  const sockets: FakeSocket[] = []
  const timers: { fn: () => void; ms: number; cleared: boolean }[] = []
  const events: number[] = []
  const states: StreamState[] = []
  const stream = new RunEventStream(
    {
      connect: (after) => {
        const s = new FakeSocket(after)
        sockets.push(s)
        return s
      },
      setTimer: (fn, ms) => {
        const t = { fn, ms, cleared: false }
        timers.push(t)
        return t
      },
      clearTimer: (h) => {
        ;(h as { cleared: boolean }).cleared = true
      },
    },
    { onEvent: (e) => events.push(e.seq), onState: (s) => states.push(s), minDelayMs: 100, maxDelayMs: 400 },
  )
  const fire = () => {
    const t = timers.filter((x) => !x.cleared).at(-1)!
    t.cleared = true
    t.fn()
    return t.ms
  }
  return { stream, sockets, timers, events, states, fire }
}

const ev = (seq: number): Partial<RunEvent> => ({ run_id: 'r', seq, ts: seq, level: 'info', kind: 'k', message: 'm' })

describe('run event stream', () => {
  it('replays from after=0 and delivers each event once, in order', () => {
    const { stream, sockets, events } = setup()
    stream.start()
    expect(sockets[0]!.after).toBe(0)
    sockets[0]!.open()
    for (const n of [1, 2, 2, 3, 1]) sockets[0]!.send(ev(n))
    expect(events).toEqual([1, 2, 3])
    expect(stream.seq).toBe(3)
  })

  it('reconnects after a drop from the last seq seen, dropping replayed duplicates', () => {
    const { stream, sockets, events, states, fire } = setup()
    stream.start()
    sockets[0]!.open()
    sockets[0]!.send(ev(1))
    sockets[0]!.send(ev(2))
    sockets[0]!.drop()
    expect(states).toContain('reconnecting')
    fire()
    expect(sockets[1]!.after).toBe(2)
    sockets[1]!.open()
    // a Hub may replay an overlapping page; nothing is repeated, nothing lost
    for (const n of [2, 3, 4]) sockets[1]!.send(ev(n))
    expect(events).toEqual([1, 2, 3, 4])
    expect(states.at(-1)).toBe('open')
  })

  it('backs off between failed attempts and resets after an event arrives', () => {
    const { stream, sockets, fire } = setup()
    stream.start()
    sockets[0]!.drop()
    expect(fire()).toBe(100)
    sockets[1]!.drop()
    expect(fire()).toBe(200)
    sockets[2]!.drop()
    expect(fire()).toBe(400)
    sockets[3]!.drop()
    expect(fire()).toBe(400) // capped
    sockets[4]!.open()
    sockets[4]!.send(ev(1))
    sockets[4]!.drop()
    expect(fire()).toBe(100)
    expect(sockets[5]!.after).toBe(1)
  })

  it('ends on a normal close and does not reconnect', () => {
    const { stream, sockets, timers, states } = setup()
    stream.start()
    sockets[0]!.open()
    sockets[0]!.drop(1000)
    expect(states.at(-1)).toBe('ended')
    expect(timers).toHaveLength(0)
    expect(stream.current).toBe('ended')
  })

  it('ends without reconnecting when the Hub closes it because the session ended (1008)', () => {
    const { stream, sockets, timers, states } = setup()
    stream.start()
    sockets[0]!.open()
    sockets[0]!.drop(1008)
    expect(states.at(-1)).toBe('ended')
    expect(timers).toHaveLength(0)
    expect(sockets).toHaveLength(1)
  })

  it('stops cleanly: closes the socket, cancels a pending reconnect, ignores late messages', () => {
    const { stream, sockets, timers, events } = setup()
    stream.start()
    sockets[0]!.drop()
    expect(timers).toHaveLength(1)
    stream.stop()
    expect(timers[0]!.cleared).toBe(true)
    const s2 = setup()
    s2.stream.start()
    s2.sockets[0]!.open()
    const sock = s2.sockets[0]!
    const onmessage = sock.onmessage
    s2.stream.stop()
    expect(sock.closed).toBe(true)
    onmessage?.({ data: JSON.stringify(ev(9)) })
    expect(s2.events).toEqual([])
    expect(events).toEqual([])
  })

  it('ignores malformed messages', () => {
    const { stream, sockets, events } = setup()
    stream.start()
    sockets[0]!.send('not json')
    sockets[0]!.send('{"seq":"x"}')
    sockets[0]!.send('null')
    sockets[0]!.send(ev(5))
    expect(events).toEqual([5])
  })

  it('resumes after the seq it was given', () => {
    const sockets: FakeSocket[] = []
    const s = new RunEventStream(
      { connect: (a) => (sockets.push(new FakeSocket(a)), sockets.at(-1)!), setTimer: () => 0, clearTimer: () => {} },
      { after: 41, onEvent: () => {} },
    )
    s.start()
    expect(sockets[0]!.after).toBe(41)
  })

  it('derives ws/wss from the page scheme', () => {
    expect(socketUrl('/api/runs/1/events/ws?after=0', { protocol: 'http:', host: 'h:9876' })).toBe('ws://h:9876/api/runs/1/events/ws?after=0')
    expect(socketUrl('/x', { protocol: 'https:', host: 'h' })).toBe('wss://h/x')
  })
})
