import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, buildUrl, configureClient } from '@/api/client'
import { api } from '@/api'
import { errorText, fieldErrors } from '@/lib/errors'
import { mockFetch } from './fetchMock'

afterEach(() => {
  vi.unstubAllGlobals()
  configureClient({ csrfToken: () => null, onUnauthorized: () => {} })
})

describe('api client', () => {
  it('builds query strings, skipping empty values and repeating arrays', () => {
    expect(buildUrl('/api/jobs', { q: 'a b', page: 2, include_archived: false, scope: undefined, x: '' })).toBe(
      '/api/jobs?q=a+b&page=2&include_archived=false',
    )
    expect(buildUrl('/api/notifications/queue', { status: ['failed', 'queued'] })).toBe('/api/notifications/queue?status=failed&status=queued')
    expect(buildUrl('/api/x')).toBe('/api/x')
  })

  it('sends the CSRF token on mutating requests only', async () => {
    configureClient({ csrfToken: () => 'tok' })
    const calls = mockFetch({ 'GET /api/jobs': { body: { items: [], page: 1, page_size: 20, total: 0 } }, 'POST /api/jobs/j1/run': { body: { run_id: 'r', status: 'queued' } } })
    await api.jobs.list()
    await api.jobs.runNow('j1')
    expect(calls[0]!.headers['X-CSRF-Token']).toBeUndefined()
    expect(calls[1]!.headers['X-CSRF-Token']).toBe('tok')
  })

  it('turns the error envelope into an ApiError with the request ID', async () => {
    mockFetch({
      'POST /api/jobs': {
        status: 400,
        body: { error: 'invalid_webdav_secret', message: 'secret not found', details: { field: 'spec.target.secret_name' }, request_id: 'abc123' },
      },
    })
    const err = await api.jobs.create({} as never).catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.code).toBe('invalid_webdav_secret')
    expect(err.status).toBe(400)
    expect(err.field).toBe('spec.target.secret_name')
    expect(errorText(err)).toBe('secret not found (request ID abc123)')
    expect(fieldErrors(err)).toEqual({ 'spec.target.secret_name': 'secret not found' })
  })

  it('takes the request ID from the header when the body lacks it, and survives non-JSON errors', async () => {
    mockFetch({ 'GET /api/system': { status: 502, body: 'x', headers: { 'X-Request-Id': 'hdr-1' } } })
    const err = await api.system().catch((e) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err.requestId).toBe('hdr-1')
    expect(err.code).toBe('http_502')
  })

  it('reads retry_after_seconds from a 429', async () => {
    mockFetch({
      'POST /api/auth/login': { status: 429, body: { error: 'rate_limited', message: 'too many', details: { reason: 'throttled', params: { retry_after_seconds: 870 } }, request_id: 'r' } },
    })
    const err = await api.login('a', 'b').catch((e) => e)
    expect(err.retryAfterSeconds).toBe(870)
  })

  it('calls the unauthorized hook on 401 unauthorized but not on invalid_credentials', async () => {
    const hook = vi.fn()
    configureClient({ onUnauthorized: hook })
    mockFetch({
      'GET /api/jobs': { status: 401, body: { error: 'unauthorized', message: 'no session' } },
      'POST /api/auth/login': { status: 401, body: { error: 'invalid_credentials', message: 'bad' } },
    })
    await api.jobs.list().catch(() => {})
    await api.login('a', 'b').catch(() => {})
    expect(hook).toHaveBeenCalledTimes(1)
  })

  it('maps violations to fields', () => {
    const err = new ApiError(400, 'invalid_spec', 'bad', { violations: [{ field: 'spec.retention.keep_last', reason: 'max' }] }, 'r')
    expect(fieldErrors(err)).toEqual({ 'spec.retention.keep_last': 'max' })
  })

  it('reports a network failure as network_error', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => { throw new TypeError('Failed to fetch') }))
    const err = await api.system().catch((e) => e)
    expect(err.code).toBe('network_error')
  })
})
