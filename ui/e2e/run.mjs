// The browser journey against a real Hub (`npm run e2e`). Run scripts/ui-build and
// `go build -o bin/bastion ./hub/cmd/bastion` first (scripts/test does both).
//
// Every capability the journey uses exists in the Hub, so nothing is skipped: a missing route
// (404) or a broken one (5xx) fails the step that met it. The run fails on any failed step, any
// console error, any failed request, and any 4xx/5xx the step did not declare as expected.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO, SCREENSHOTS, freePort, killAll, spawnLogged, startBrowser, startHub, until } from './harness.mjs'

const DESKTOP = { width: 1280, height: 800 }
const MOBILE = { width: 390, height: 844 }
const USER = 'admin'
const PASSWORD = 'correct horse battery staple'

const results = []
const problems = []
let checked = 0 // problems up to here were charged to a step

/** Takes the problems seen since the last call, so one between two steps still fails the next. */
function newProblems() {
  const fresh = problems.slice(checked)
  checked = problems.length
  return fresh
}

function watch(page) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return
    const loc = msg.location()?.url ?? ''
    // The browser logs every 4xx fetch; those the journey expects are checked on the response.
    if (/Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text()) && expectedStatus.has(loc)) return
    problems.push(`console error on ${page.url()}: ${msg.text()} ${loc}`)
  })
  page.on('pageerror', (err) => problems.push(`page error on ${page.url()}: ${err.message}`))
  page.on('requestfailed', (req) => {
    const f = req.failure()?.errorText ?? ''
    // Leaving a page aborts its in-flight requests and sockets; that is not a failure.
    if (/ERR_ABORTED/.test(f)) return
    problems.push(`request failed: ${req.method()} ${req.url()} ${f}`)
  })
  page.on('response', (res) => {
    const s = res.status()
    if (s < 400 || expectedStatus.has(res.url())) return
    problems.push(`HTTP ${s} for ${res.request().method()} ${res.url()}`)
  })
}
const expectedStatus = new Set()

/**
 * Resolves once the page has rendered two frames: media-query change events and resize observers
 * run in a frame's rendering steps, and the app's re-render lands before the next one.
 */
function renderedFrame(page) {
  return page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done()))))
}

async function shoot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true })
  await page.waitForLoadState('networkidle').catch(() => {})
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-1280x800.png`), fullPage: false })
  await page.setViewportSize(MOBILE)
  await renderedFrame(page) // the app has reacted to the new width (matchMedia, resize observers)
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-390x844.png`), fullPage: false })
  await page.setViewportSize(DESKTOP)
}

let currentPage = null
async function step(name, fn) {
  try {
    await fn()
    const fresh = newProblems()
    if (fresh.length) throw new Error(fresh.join('\n  '))
    results.push({ name, status: 'pass' })
    console.log(`PASS  ${name}`)
    return true
  } catch (err) {
    if (currentPage) {
      mkdirSync(SCREENSHOTS, { recursive: true })
      const file = join(SCREENSHOTS, `failed-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.png`)
      await currentPage.screenshot({ path: file }).catch(() => {})
    }
    const detail = [err.message, ...newProblems()].join('\n  ')
    results.push({ name, status: 'fail', detail })
    console.log(`FAIL  ${name}\n  ${detail}`)
    return false
  }
}

function findFile(dir, name) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e)
    if (statSync(p).isDirectory()) {
      const hit = findFile(p, name)
      if (hit) return hit
    } else if (e === name) return p
  }
  return null
}

async function main() {
  const hub = await startHub()
  const base = hub.base
  console.log(`hub at ${base}`)

  // Data the journey backs up and restores.
  const work = mkdtempSync(join(tmpdir(), 'bastion-e2e-work-'))
  const src = join(work, 'src')
  const target = join(work, 'target')
  const restoreDir = join(work, 'restore-out')
  mkdirSync(join(src, 'sub'), { recursive: true })
  mkdirSync(target)
  const helloBytes = Buffer.concat([Buffer.from('hello from the bastion e2e journey\n'), randomBytes(4096)])
  writeFileSync(join(src, 'hello.txt'), helloBytes)
  writeFileSync(join(src, 'sub', 'data.bin'), randomBytes(256 * 1024))

  const context = await startBrowser()
  const page = context.pages()[0] ?? (await context.newPage())
  watch(page)
  currentPage = page
  const state = { jobId: null, runId: null }

  await step('first-run setup', async () => {
    await page.goto(base + '/')
    await page.getByTestId('setup-username').locator('input').waitFor()
    await shoot(page, 'setup')
    await page.getByTestId('setup-username').locator('input').fill(USER)
    await page.getByTestId('setup-password').locator('input').fill(PASSWORD)
    await page.getByTestId('setup-confirm').locator('input').fill(PASSWORD)
    await page.getByTestId('setup-submit').click()
    await page.getByTestId('setup-done').waitFor()
  })

  await step('login', async () => {
    if (!page.url().includes('/login')) await page.goto(base + '/login')
    await page.getByTestId('login-username').locator('input').waitFor()
    await shoot(page, 'login')
    await page.getByTestId('login-username').locator('input').fill(USER)
    await page.getByTestId('login-password').locator('input').fill(PASSWORD)
    await page.getByTestId('login-submit').click()
    await page.getByTestId('page-dashboard').waitFor()
  })

  await step('dashboard renders', async () => {
    await page.goto(base + '/')
    await page.getByTestId('page-dashboard').waitFor()
    // Reached over loopback: plain HTTP is fine here and no insecure-transport banner may show.
    if ((await page.getByTestId('insecure-banner').count()) > 0) throw new Error('insecure banner shown on loopback')
    await shoot(page, 'dashboard')
  })

  await step('settings, notifications and agents pages render', async () => {
    for (const [path, id, shot] of [['/settings', 'page-settings', 'settings'], ['/notifications', 'page-notifications', 'notifications'], ['/agents', 'page-agents', 'agents'], ['/jobs', 'page-jobs', 'jobs'], ['/jobs/new', 'page-job-editor', 'job-editor']]) {
      await page.goto(base + path)
      await page.getByTestId(id).waitFor()
      await shoot(page, shot)
    }
  })

  await step('add a WebDAV credential: listed by name, secret never shown', async () => {
    await page.goto(base + '/settings')
    await page.getByTestId('secret-add-webdav').click()
    await page.getByTestId('secret-name').locator('input').fill('e2e-nas')
    await page.getByTestId('secret-username').locator('input').fill('backup')
    await page.getByTestId('secret-password').locator('input').fill('s3cret-e2e-password')
    await page.getByTestId('secret-save').click()
    await page.getByText('e2e-nas').waitFor()
    const text = await page.getByTestId('page-settings').innerText()
    if (text.includes('s3cret-e2e-password')) throw new Error('the credential list shows the password')
    await shoot(page, 'settings-credentials')
  })

  // A webhook receiver on loopback: what the Hub delivers lands here.
  const hooks = []
  const receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      hooks.push({ method: req.method, url: req.url, body })
      res.writeHead(200, { 'Content-Type': 'application/json' })
      res.end('{"ok":true}')
    })
  })
  await new Promise((ok) => receiver.listen(0, '127.0.0.1', ok))
  const hookUrl = `http://127.0.0.1:${receiver.address().port}/hook`

  await step('add a webhook destination and send a test that reaches the receiver', async () => {
    await page.goto(base + '/settings')
    await page.locator('.n-tabs-tab').getByText('Webhook', { exact: true }).click()
    await page.getByTestId('secret-add-webhook').click()
    await page.getByTestId('secret-name').locator('input').fill('e2e-hook')
    await page.getByTestId('secret-url').locator('input').fill(hookUrl)
    await page.getByTestId('secret-save').click()
    await page.getByText('e2e-hook').waitFor()
    await page.goto(base + '/notifications')
    const row = page.getByTestId('destinations-table').locator('tr', { hasText: 'e2e-hook' })
    await row.waitFor()
    const before = hooks.length
    await row.getByTestId('dest-test').click()
    await row.getByTestId('dest-test-result').waitFor()
    const answer = await row.getByTestId('dest-test-result').innerText()
    if (!answer.startsWith('Delivered')) throw new Error(`test-send answered: ${answer}`)
    if (hooks.length !== before + 1 || hooks.at(-1).method !== 'POST') throw new Error(`the receiver saw ${hooks.length - before} requests`)
    await shoot(page, 'notifications-destinations')
  })

  await step('browse the Hub file system in the path picker', async () => {
    await page.goto(base + '/jobs/new')
    await page.getByTestId('job-name').locator('input').fill('picker check')
    await page.getByTestId('editor-next').click()
    await page.getByTestId('source-browse').click()
    await page.getByTestId('picker-path').locator('input').fill(work)
    await page.getByTestId('picker-path').locator('input').press('Enter')
    await page.getByTestId('picker-check-src').click()
    await shoot(page, 'path-picker')
    await page.getByTestId('picker-confirm').click()
    const values = await page.getByTestId('source-paths').locator('input').evaluateAll((xs) => xs.map((x) => x.value))
    if (!values.includes(src)) throw new Error(`source paths ${JSON.stringify(values)}, want ${src}`)
  })

  await step('create a local-directory job with a cron schedule', async () => {
    await page.goto(base + '/jobs/new')
    await page.getByTestId('job-name').locator('input').fill('e2e nightly')
    await shoot(page, 'job-editor')
    await page.getByTestId('editor-next').click()
    const paths = page.getByTestId('source-paths')
    await paths.locator('button').first().click()
    await paths.locator('input').first().fill(src)
    await page.getByTestId('editor-next').click()
    await page.getByTestId('target-dir').locator('input').fill(target)
    await page.getByTestId('editor-next').click()
    await page.getByTestId('schedule-mode').getByText('Cron', { exact: true }).click()
    await page.getByTestId('schedule-cron').locator('input').fill('30 3 * * *')
    await until('the schedule preview', async () => (await page.getByTestId('schedule-preview').locator('li').count()) === 5, 10_000)
    await shoot(page, 'job-editor-schedule')
    const first = await page.getByTestId('schedule-preview').locator('li').first().innerText()
    if (!first.includes('03:30:00')) throw new Error(`preview shows ${first}, want 03:30:00`)
    for (let i = 0; i < 4; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('review-json').waitFor()
    await page.getByTestId('editor-save').click()
    await page.getByTestId('page-job').waitFor()
    state.jobId = new URL(page.url()).pathname.split('/').pop()
    await shoot(page, 'job-detail')
  })

  await step('run now and watch the progress bar reach success', async () => {
    if (!state.jobId) throw new Error('no job from the previous step')
    await page.goto(`${base}/jobs/${state.jobId}`)
    await page.getByTestId('run-now').click()
    await page.getByTestId('page-run').waitFor()
    state.runId = new URL(page.url()).pathname.split('/').pop()
    await until('the run to succeed', async () => (await page.getByTestId('run-status').getAttribute('data-status')) === 'success', 60_000)
    await until('the bar at 100%', async () => (await page.getByTestId('progress-bar').getAttribute('data-percent')) === '100', 10_000)
    await until('events in the log', async () => (await page.getByTestId('event-row').count()) > 0, 10_000)
    const seqs = await page.getByTestId('event-row').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-seq'))))
    if (seqs.some((s, i) => i > 0 && s <= seqs[i - 1])) throw new Error(`events out of order or repeated: ${seqs}`)
    await shoot(page, 'run')
    await page.goto(base + '/')
    await until('the run on the dashboard', async () => (await page.getByTestId('recent-runs').locator('[data-status="success"]').count()) > 0, 10_000)
    // The Hub's overview counts the run in today's bucket and the snapshot's bytes.
    const ok = (await page.getByTestId('stat-runs-ok').locator('.n-statistic-value').innerText()).trim()
    const failed = (await page.getByTestId('stat-runs-failed').locator('.n-statistic-value').innerText()).trim()
    const bytes = (await page.getByTestId('stat-bytes').locator('.n-statistic-value').innerText()).trim()
    if (ok !== '1' || failed !== '0') throw new Error(`dashboard counts ${ok} successful and ${failed} failed runs, want 1 and 0`)
    if (!/^[1-9][\d.]* (B|KiB|MiB)$/.test(bytes)) throw new Error(`dashboard shows ${bytes} stored, want the snapshot's size`)
    await shoot(page, 'dashboard-after-run')
  })

  await step('the run event console and the docs read on desktop and phone', async () => {
    if (!state.runId) throw new Error('no run from the previous step')
    const fitsPhone = async (what) => {
      await page.setViewportSize(MOBILE)
      await renderedFrame(page)
      const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth])
      await page.setViewportSize(DESKTOP)
      if (sw > iw + 1) throw new Error(`${what} is ${sw}px wide on a ${iw}px phone`)
    }
    await page.goto(`${base}/runs/${state.runId}`)
    await page.getByTestId('run-console').click()
    await page.getByTestId('page-run-console').waitFor()
    await until('events in the console', async () => (await page.getByTestId('console-row').count()) > 0, 10_000)
    const font = await page.getByTestId('console-log').evaluate((el) => getComputedStyle(el).fontFamily)
    if (!/mono/i.test(font)) throw new Error(`console font is ${font}, want monospace`)
    await fitsPhone('the console')
    await shoot(page, 'run-console')
    const help = await page.getByTestId('help-docs').getAttribute('href')
    if (help !== '/docs/') throw new Error(`help link goes to ${help}`)
    await page.goto(`${base}/docs/`)
    await page.locator('a[href="jobs-and-runs"]').click()
    await page.waitForURL(`${base}/docs/jobs-and-runs`)
    if (!(await page.locator('main h1').first().isVisible())) throw new Error('the document has no heading')
    await fitsPhone('a docs page')
    await shoot(page, 'docs')
  })

  await step('the run notifies the webhook and the queue lists it as sent', async () => {
    if (!state.runId) throw new Error('no run')
    await until('the webhook delivery for the run', async () => hooks.some((h) => h.body.includes(state.runId)), 30_000)
    await page.goto(base + '/notifications')
    await page.locator('.n-tabs-tab').getByText('Delivery queue', { exact: true }).click()
    await until('a sent row in the queue', async () => {
      await page.getByTestId('queue-table').locator('[data-status]').first().waitFor({ timeout: 5000 })
      return (await page.getByTestId('queue-table').locator('[data-status="sent"]').count()) > 0
    }, 30_000, 500)
    await shoot(page, 'notifications-queue')
  })

  await step('restore one file into a new directory and check its bytes', async () => {
    if (!state.runId) throw new Error('no run from the previous step')
    await page.goto(`${base}/runs/${state.runId}/restore`)
    await page.getByTestId('page-restore').waitFor()
    const prefix = src.replace(/^\/+/, '')
    await page.getByPlaceholder('Path inside the snapshot').fill(prefix)
    await page.getByPlaceholder('Path inside the snapshot').press('Enter')
    await page.getByTestId('entry-check-hello.txt').click()
    await shoot(page, 'restore')
    await page.getByTestId('restore-next').click()
    await page.getByTestId('restore-dir').locator('input').fill(restoreDir)
    await page.getByTestId('restore-start').click()
    await page.getByTestId('page-operation').waitFor()
    await until('the restore to succeed', async () => (await page.getByTestId('operation-status').getAttribute('data-status')) === 'success', 60_000)
    await shoot(page, 'operation')
    const restored = findFile(restoreDir, 'hello.txt')
    if (!restored) throw new Error(`hello.txt not found under ${restoreDir}`)
    if (!readFileSync(restored).equals(helloBytes)) throw new Error('restored bytes differ from the source')
    if (findFile(restoreDir, 'data.bin')) throw new Error('restored a file that was not selected')
  })

  await step('restore one file to WebDAV (rclone) and find its bytes on the server', async () => {
    if (!state.runId) throw new Error('no run from the previous steps')
    // rclone serving a temp dir over WebDAV on a free loopback port, with Basic auth.
    const davRoot = mkdtempSync(join(tmpdir(), 'bastion-e2e-dav-'))
    const share = join(davRoot, 'share')
    mkdirSync(share)
    writeFileSync(join(davRoot, 'rclone.conf'), '')
    const davPort = await freePort()
    const davUrl = `http://127.0.0.1:${davPort}/`
    const davPass = randomBytes(12).toString('hex')
    spawnLogged('rclone-webdav', 'rclone', ['serve', 'webdav', '--config', join(davRoot, 'rclone.conf'), '--addr', `127.0.0.1:${davPort}`, '--user', 'e2e', '--pass', davPass, share])
    const auth = 'Basic ' + Buffer.from(`e2e:${davPass}`).toString('base64')
    await until('rclone WebDAV to answer', async () => {
      const r = await fetch(davUrl, { method: 'PROPFIND', headers: { Authorization: auth, Depth: '0' } }).catch(() => null)
      return r !== null && r.status === 207
    }, 30_000, 200)

    // The Hub's credential for that server, bound to it.
    await page.goto(base + '/settings')
    await page.getByTestId('secret-add-webdav').click()
    await page.getByTestId('secret-name').locator('input').fill('e2e-dav-restore')
    await page.getByTestId('secret-username').locator('input').fill('e2e')
    await page.getByTestId('secret-password').locator('input').fill(davPass)
    await page.getByTestId('secret-origins').locator('textarea').fill(davUrl)
    await page.getByTestId('secret-save').click()
    await page.getByText('e2e-dav-restore', { exact: true }).waitFor()

    await page.goto(`${base}/runs/${state.runId}/restore`)
    await page.getByTestId('page-restore').waitFor()
    const prefix = src.replace(/^\/+/, '')
    await page.getByPlaceholder('Path inside the snapshot').fill(prefix)
    await page.getByPlaceholder('Path inside the snapshot').press('Enter')
    await page.getByTestId('entry-check-hello.txt').click()
    await page.getByTestId('restore-next').click()
    await page.getByTestId('restore-dest-webdav').click()
    await page.getByTestId('restore-dav-url').locator('input').fill(davUrl)
    await page.getByTestId('restore-dav-secret').click()
    await page.locator('.n-base-select-option', { hasText: 'e2e-dav-restore' }).click()
    await page.getByTestId('restore-dav-prefix').locator('input').fill('e2e/restored')
    await shoot(page, 'restore-webdav')
    await page.getByTestId('restore-start').click()
    await page.getByTestId('page-operation').waitFor()
    const opId = new URL(page.url()).pathname.split('/').pop()
    await until('the WebDAV restore to succeed', async () => (await page.getByTestId('operation-status').getAttribute('data-status')) === 'success', 60_000)
    const restored = findFile(join(share, 'e2e', 'restored'), 'hello.txt')
    if (!restored) throw new Error('hello.txt is not on the WebDAV server under e2e/restored')
    if (!readFileSync(restored).equals(helloBytes)) throw new Error('the bytes on the WebDAV server differ from the source')
    if (findFile(join(share, 'e2e', 'restored'), 'data.bin')) throw new Error('restored a file that was not selected')
    const records = readdirSync(join(share, 'e2e', 'restored', '.bastion-meta', 'restore', opId, 'entries'))
    if (records.length === 0) throw new Error('no entry records under .bastion-meta')
  })

  await step('pin and delete a snapshot', async () => {
    if (!state.jobId) throw new Error('no job')
    await page.goto(`${base}/jobs/${state.jobId}`)
    await page.locator('.n-tabs-tab', { hasText: 'Snapshots' }).click()
    await page.getByTestId('snap-pin').first().click()
    await page.getByTestId('pinned-tag').first().waitFor()
    await shoot(page, 'job-snapshots')
    await page.getByTestId('snap-delete').first().click()
    await page.locator('.n-dialog').getByRole('button', { name: 'Delete' }).click()
    await until('the snapshot to be deleting or deleted', async () => {
      const s = await page.getByTestId('snapshots-table').locator('[data-status]').first().getAttribute('data-status')
      return s === 'deleting' || s === 'deleted'
    }, 30_000)
  })

  await step('add an S3 credential, back up to S3 (versitygw) and see the snapshot in the bucket', async () => {
    // versitygw's posix backend on a temp dir, on a free loopback port: a top-level directory is a bucket.
    const root = mkdtempSync(join(tmpdir(), 'bastion-e2e-s3-'))
    mkdirSync(join(root, 'e2e-bucket'))
    const endpoint = `http://127.0.0.1:${await freePort()}`
    const access = 'AKE2E' + randomBytes(6).toString('hex').toUpperCase()
    const secret = randomBytes(20).toString('hex')
    spawnLogged('versitygw', join(REPO, '.cache', 'bin', 'versitygw'), ['--access', access, '--secret', secret, '--port', endpoint.slice(7), '--region', 'us-east-1', 'posix', root])
    await until('versitygw to answer', async () => (await fetch(endpoint + '/').catch(() => null)) !== null, 30_000, 200)

    await page.goto(base + '/settings')
    await page.locator('.n-tabs-tab').getByText('S3', { exact: true }).click()
    await page.getByTestId('secret-add-s3').click()
    await page.getByTestId('secret-name').locator('input').fill('e2e-s3')
    await page.getByTestId('secret-access-key-id').locator('input').fill(access)
    await page.getByTestId('secret-secret-access-key').locator('input').fill(secret)
    await page.getByTestId('secret-origins').locator('textarea').fill(endpoint)
    await page.getByTestId('secret-save').click()
    await page.getByText('e2e-s3', { exact: true }).waitFor()
    if ((await page.getByTestId('page-settings').innerText()).includes(secret)) throw new Error('the credential list shows the secret key')
    await shoot(page, 'settings-credentials-s3')

    await page.goto(base + '/jobs/new')
    await page.getByTestId('job-name').locator('input').fill('e2e s3')
    await page.getByTestId('editor-next').click()
    const paths = page.getByTestId('source-paths')
    await paths.locator('button').first().click()
    await paths.locator('input').first().fill(src)
    await page.getByTestId('editor-next').click()
    await page.getByTestId('target-type').getByText('S3', { exact: true }).click()
    await page.getByTestId('s3-endpoint').locator('input').fill(endpoint)
    await page.getByTestId('s3-region').locator('input').fill('us-east-1')
    await page.getByTestId('s3-bucket').locator('input').fill('e2e-bucket')
    await page.getByTestId('s3-prefix').locator('input').fill('journey')
    await page.getByTestId('s3-path-style').click()
    await page.getByTestId('target-secret').click()
    await page.locator('.n-base-select-option', { hasText: 'e2e-s3' }).click()
    if ((await page.getByTestId('credential-missing').count()) > 0) throw new Error('the picked credential is reported missing')
    await shoot(page, 'job-editor-s3')
    for (let i = 0; i < 5; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('review-json').waitFor()
    await page.getByTestId('editor-save').click()
    await page.getByTestId('page-job').waitFor()
    const jobId = new URL(page.url()).pathname.split('/').pop()

    await page.getByTestId('run-now').click()
    await page.getByTestId('page-run').waitFor()
    const runId = new URL(page.url()).pathname.split('/').pop()
    await until('the S3 run to succeed', async () => (await page.getByTestId('run-status').getAttribute('data-status')) === 'success', 60_000)
    await page.goto(`${base}/jobs/${jobId}`)
    await page.locator('.n-tabs-tab', { hasText: 'Snapshots' }).click()
    await until('the snapshot listed as present', async () => (await page.getByTestId('snapshots-table').locator('[data-status="present"]').count()) === 1, 10_000)
    await shoot(page, 'job-snapshots-s3')
    const objects = readdirSync(join(root, 'e2e-bucket', 'journey', jobId, runId))
    for (const name of ['complete.json', 'manifest.json', 'payload.part000001']) {
      if (!objects.includes(name)) throw new Error(`${name} not in the bucket: ${objects}`)
    }
  })

  await step('enroll a real agent and see it online', async () => {
    await page.goto(base + '/agents')
    await page.getByTestId('agent-enroll').click()
    await page.getByTestId('enroll-name').locator('input').fill('e2e-agent')
    await page.getByTestId('enroll-create').click()
    const command = (await page.getByTestId('enroll-command').innerText()).trim()
    const m = /^bastion agent --hub-url (\S+) --enroll-token (\S+) --name e2e-agent$/.exec(command)
    if (!m) throw new Error(`unexpected command: ${command}`)
    if (m[1] !== base) throw new Error(`hub url ${m[1]}, want ${base}`)
    await page.getByTestId('enroll-copy').click()
    const copied = await page.evaluate(() => navigator.clipboard.readText())
    if (copied !== command) throw new Error('the copy button did not copy the command')
    await shoot(page, 'agent-enroll')
    const agentDir = mkdtempSync(join(tmpdir(), 'bastion-e2e-agent-'))
    spawnLogged('agent', hub.bin, ['agent', '--hub-url', m[1], '--enroll-token', m[2], '--name', 'e2e-agent', '--data-dir', agentDir])
    await page.keyboard.press('Escape')
    await until('the agent to show online', async () => {
      await page.reload()
      await page.getByTestId('page-agents').waitFor()
      const rows = page.getByTestId('agents-table').locator('tr', { hasText: 'e2e-agent' })
      if ((await rows.count()) === 0) return false
      return (await rows.first().locator('[data-status]').first().getAttribute('data-status')) === 'online'
    }, 60_000, 1000)
    await shoot(page, 'agents-online')
  })

  await step('give the agent its own WebDAV credential and set up an agent job that uses it', async () => {
    await page.goto(base + '/agents')
    const row = page.getByTestId('agents-table').locator('tr', { hasText: 'e2e-agent' }).first()
    await row.getByTestId('agent-credentials').click()
    const modal = page.getByTestId('agent-credentials-modal')
    await modal.getByTestId('secret-add-webdav').click()
    await page.getByTestId('secret-name').locator('input').fill('agent-nas')
    await page.getByTestId('secret-username').locator('input').fill('agent-user')
    await page.getByTestId('secret-password').locator('input').fill('agent-s3cret')
    await page.getByTestId('secret-save').click()
    await modal.getByText('agent-nas').waitFor()
    await page.getByTestId('secret-save').waitFor({ state: 'hidden' })
    const listed = await modal.innerText()
    if (listed.includes('e2e-nas')) throw new Error('the agent’s credentials list the Hub’s e2e-nas')
    if (listed.includes('agent-s3cret')) throw new Error('the credential list shows the password')
    await shoot(page, 'agent-credentials')

    await page.goto(base + '/jobs/new')
    await page.getByTestId('job-name').locator('input').fill('e2e agent webdav')
    await page.getByTestId('job-node').click()
    await page.locator('.n-base-select-option', { hasText: 'e2e-agent' }).click()
    await page.getByTestId('editor-next').click()
    const paths = page.getByTestId('source-paths')
    await paths.locator('button').first().click()
    await paths.locator('input').first().fill('/srv/agent-data')
    await page.getByTestId('editor-next').click()
    await page.getByTestId('target-type').getByText('WebDAV', { exact: true }).click()
    await page.getByTestId('target-url').locator('input').fill('http://127.0.0.1:9/dav/backups')
    await page.getByTestId('target-secret').click()
    const offered = await page.locator('.n-base-select-option').allInnerTexts()
    if (JSON.stringify(offered.map((x) => x.trim())) !== JSON.stringify(['agent-nas'])) throw new Error(`the credential picker offers ${JSON.stringify(offered)}, want only the agent’s agent-nas`)
    await page.locator('.n-base-select-option', { hasText: 'agent-nas' }).click()
    if ((await page.getByTestId('credential-missing').count()) > 0) throw new Error('the picked credential is reported missing')
    await shoot(page, 'job-editor-agent-webdav')
    for (let i = 0; i < 5; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('review-json').waitFor()
    // The Hub checks the credential in the agent's scope: a save only succeeds if the picker used it.
    await page.getByTestId('editor-save').click()
    await page.getByTestId('page-job').waitFor()
    const title = await page.getByTestId('job-title').innerText()
    if (!title.includes('e2e agent webdav')) throw new Error(`saved job shows ${title}`)
  })

  await step('Sync now on the online agent says what the Hub did', async () => {
    await page.goto(base + '/agents')
    const row = page.getByTestId('agents-table').locator('tr', { hasText: 'e2e-agent' }).first()
    await row.getByTestId('agent-sync').click()
    const msg = page.locator('.n-message').last()
    await msg.waitFor()
    const text = (await msg.innerText()).trim()
    // The agent is connected: the config is either sent now or already there, never "pending".
    if (!['Configuration sent to the agent', 'The agent already has the current configuration'].includes(text)) throw new Error(`Sync now said: ${text}`)
  })

  await step('the agent page shows the agent, its sync state and its job, on desktop and phone', async () => {
    await page.goto(base + '/agents')
    const row = page.getByTestId('agents-table').locator('tr', { hasText: 'e2e-agent' }).first()
    await row.getByTestId('agent-link').click()
    await page.getByTestId('page-agent').waitFor()
    await page.getByTestId('agent-title').getByText('e2e-agent').waitFor()
    const status = await page.getByTestId('agent-status').getAttribute('data-status')
    if (status !== 'online') throw new Error(`agent page says ${status}, want online`)
    await page.getByTestId('agent-jobs').getByText('e2e agent webdav').waitFor()
    await page.getByTestId('agent-sync-state').waitFor()
    await shoot(page, 'agent-detail')
    await page.setViewportSize(MOBILE)
    await renderedFrame(page)
    // Phone: the page fits the screen, no sideways scrolling.
    const width = await page.evaluate(() => document.documentElement.scrollWidth)
    await page.setViewportSize(DESKTOP)
    if (width > MOBILE.width) throw new Error(`agent page is ${width}px wide on a ${MOBILE.width}px phone`)
    const missing = base + '/api/fleet/no-such-agent'
    expectedStatus.add(missing)
    await page.goto(base + '/agents/no-such-agent')
    await page.getByTestId('agent-not-found').waitFor()
  })

  // Three agents (the one above and two more), labelled with one bulk operation from the agents
  // page; then a job deployed to them by label from the job's page, and one run per clone.
  const fleet = { agents: ['e2e-agent', 'e2e-fleet-b', 'e2e-fleet-c'], labelOp: null, deployOp: null }
  // Types a label into a bulk dialog's label picker and closes the option menu.
  const pickLabel = async (modal, testId, label) => {
    await modal.getByTestId(testId).click()
    await page.keyboard.type(label)
    await page.keyboard.press('Enter')
    await modal.locator('.n-card-header').click()
  }
  // Creates the previewed bulk operation, waits on its page until it is done with every item a
  // success, and returns its id.
  const createBulk = async (modal, what) => {
    await modal.getByTestId('bulk-create').click()
    await page.getByTestId('page-bulk-operation').waitFor()
    const id = new URL(page.url()).pathname.split('/').pop()
    await until(`the ${what} to be done`, async () => (await page.getByTestId('bulk-op-status').getAttribute('data-status')) === 'done', 30_000, 250)
    const statuses = await page.getByTestId('bulk-item').evaluateAll((xs) => xs.map((x) => x.dataset.status))
    if (statuses.join() !== 'success,success,success') throw new Error(`${what} items ${statuses}`)
    return id
  }

  await step('enroll two more agents: three online', async () => {
    for (const name of fleet.agents.slice(1)) {
      await page.goto(base + '/agents')
      await page.getByTestId('agent-enroll').click()
      await page.getByTestId('enroll-name').locator('input').fill(name)
      await page.getByTestId('enroll-create').click()
      const command = (await page.getByTestId('enroll-command').innerText()).trim()
      const m = new RegExp(`^bastion agent --hub-url (\\S+) --enroll-token (\\S+) --name ${name}$`).exec(command)
      if (!m) throw new Error(`unexpected command: ${command}`)
      const dir = mkdtempSync(join(tmpdir(), `bastion-e2e-${name}-`))
      spawnLogged(name, hub.bin, ['agent', '--hub-url', m[1], '--enroll-token', m[2], '--name', name, '--data-dir', dir])
      await page.keyboard.press('Escape')
    }
    await until('three agents online', async () => {
      const r = await page.evaluate(async () => (await fetch('/api/agents?status=online')).json())
      return fleet.agents.every((n) => r.items.some((a) => a.name === n && a.online))
    }, 60_000, 1000)
  })

  await step('label the three agents with one bulk operation from the agents page, after its preview', async () => {
    await page.goto(base + '/agents')
    for (const name of fleet.agents) {
      const row = page.getByTestId('agents-table').locator('tr', { has: page.getByTestId('agent-name').getByText(name, { exact: true }) })
      await row.locator('.n-checkbox').click()
    }
    await page.getByTestId('agents-bulk').getByText('3 selected').waitFor()
    await page.getByTestId('agents-bulk').click()
    await page.locator('.n-dropdown-option', { hasText: 'Add labels' }).click()
    const modal = page.getByTestId('bulk-create-modal')
    await modal.getByTestId('bulk-target-selected').getByText('The 3 selected agents').waitFor()
    await pickLabel(modal, 'bulk-payload-labels', 'e2e-fleet')
    if ((await modal.getByTestId('bulk-create').count()) > 0) throw new Error('Create offered before the preview')
    await modal.getByTestId('bulk-preview-btn').click()
    await until('the preview to list the three agents', async () => (await modal.getByTestId('bulk-preview-row').count()) === 3, 10_000)
    await shoot(page, 'bulk-labels-preview')
    fleet.labelOp = await createBulk(modal, 'label operation')
    const labelled = await page.evaluate(async () => (await fetch('/api/agents?labels[]=e2e-fleet')).json())
    const names = labelled.items.map((a) => a.name).sort()
    if (names.join() !== [...fleet.agents].sort().join()) throw new Error(`agents labelled e2e-fleet: ${names}`)
    await shoot(page, 'bulk-labels-done')
  })

  await step('deploy a job to the labelled agents from its page, after a preview of the clones, and see 3 runs succeed', async () => {
    const fleetTarget = join(work, 'fleet-target')
    mkdirSync(fleetTarget)
    await page.goto(base + '/jobs/new')
    await page.getByTestId('job-name').locator('input').fill('e2e fleet')
    await page.getByTestId('editor-next').click()
    const paths = page.getByTestId('source-paths')
    await paths.locator('button').first().click()
    await paths.locator('input').first().fill(src)
    await page.getByTestId('editor-next').click()
    await page.getByTestId('target-dir').locator('input').fill(fleetTarget)
    for (let i = 0; i < 5; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('review-json').waitFor()
    await page.getByTestId('editor-save').click()
    await page.getByTestId('page-job').waitFor()
    const sourceId = new URL(page.url()).pathname.split('/').pop()

    await page.getByTestId('job-deploy').click()
    const modal = page.getByTestId('bulk-create-modal')
    await modal.getByTestId('bulk-source-job').getByText('e2e fleet').waitFor()
    await pickLabel(modal, 'bulk-selector-labels', 'e2e-fleet')
    await modal.getByTestId('bulk-preview-btn').click()
    await until('the preview to plan three clones', async () => (await modal.getByTestId('bulk-preview-row').count()) === 3, 10_000)
    const planned = await modal.getByTestId('bulk-preview-row').evaluateAll((xs) => xs.map((x) => [x.dataset.ok, x.querySelector('[data-testid="bulk-preview-planned"]')?.textContent]))
    for (const [ok, name] of planned) {
      if (ok !== 'true' || !name?.startsWith('e2e fleet (')) throw new Error(`preview: ${JSON.stringify(planned)}`)
    }
    await shoot(page, 'bulk-deploy-preview')
    fleet.deployOp = await createBulk(modal, 'deploy')
    await shoot(page, 'bulk-deploy-done')

    // One clone per agent; run each from its page and watch it succeed on its agent.
    const jobs = await page.evaluate(async () => (await fetch('/api/jobs?page_size=100')).json())
    const clones = jobs.items.filter((j) => j.agent_id && j.name.startsWith('e2e fleet ('))
    if (clones.length !== 3 || new Set(clones.map((j) => j.agent_id)).size !== 3) throw new Error(`clones: ${JSON.stringify(clones.map((j) => [j.name, j.agent_id]))}`)
    if (clones.some((j) => j.id === sourceId)) throw new Error('the source job counted as a clone')
    const runs = []
    for (const clone of clones) {
      await page.goto(`${base}/jobs/${clone.id}`)
      await page.getByTestId('run-now').click()
      await page.getByTestId('page-run').waitFor()
      runs.push(new URL(page.url()).pathname.split('/').pop())
    }
    for (const id of runs) {
      await page.goto(`${base}/runs/${id}`)
      await until(`run ${id} to succeed`, async () => (await page.getByTestId('run-status').getAttribute('data-status')) === 'success', 90_000, 500)
    }
    const nodes = new Set()
    for (const id of runs) nodes.add((await page.evaluate(async (r) => (await fetch(`/api/runs/${r}`)).json(), id)).node_id ?? '')
    if (nodes.size !== 3 || nodes.has('hub')) throw new Error(`the runs ran on ${[...nodes]}`)
  })

  await step('the bulk operations pages on desktop and phone, in English and Chinese, light and dark', async () => {
    if (!fleet.deployOp) throw new Error('no operation from the earlier steps')
    for (const [loc, title] of [['en', 'Bulk operations'], ['zh-CN', '批量操作']]) {
      await page.evaluate((l) => localStorage.setItem('bastion.locale', l), loc)
      for (const [viewport, vname] of [[DESKTOP, 'desktop'], [MOBILE, 'phone']]) {
        await page.setViewportSize(viewport)
        for (const [path, ready] of [['/bulk-operations', 'bulk-row'], [`/bulk-operations/${fleet.deployOp}`, 'bulk-item']]) {
          await page.goto(base + path)
          await page.getByTestId(ready).first().waitFor()
          if (path === '/bulk-operations') {
            await page.getByTestId('page-bulk').locator('h1', { hasText: title }).waitFor()
            const rows = await page.getByTestId('bulk-row').count()
            if (rows !== 2) throw new Error(`the list shows ${rows} operations, want 2`)
          }
          await page.waitForLoadState('networkidle').catch(() => {})
          const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth])
          if (sw > iw + 1) throw new Error(`${path} (${loc}) is ${sw}px wide on a ${iw}px ${vname}`)
          const name = path === '/bulk-operations' ? 'bulk-list' : 'bulk-detail'
          await page.screenshot({ path: join(SCREENSHOTS, `${name}-${loc}-${vname}.png`) })
        }
      }
    }
    // Dark theme: the same pages, read from localStorage before the app loads.
    await page.evaluate(() => localStorage.setItem('bastion.theme', 'dark'))
    for (const path of ['/bulk-operations', `/bulk-operations/${fleet.deployOp}`]) {
      await page.goto(base + path)
      await page.locator('[data-testid="bulk-row"], [data-testid="bulk-item"]').first().waitFor()
      if ((await page.evaluate(() => document.documentElement.dataset.theme)) !== 'dark') throw new Error('dark theme not applied')
      await page.screenshot({ path: join(SCREENSHOTS, `${path === '/bulk-operations' ? 'bulk-list' : 'bulk-detail'}-dark-zh-CN-phone.png`) })
    }
    await page.evaluate(() => localStorage.removeItem('bastion.theme'))
    await page.setViewportSize(DESKTOP)
    await page.evaluate(() => localStorage.setItem('bastion.locale', 'en'))
    await page.goto(base + '/')
    await page.getByTestId('nav-bulk').getByText('Bulk operations').waitFor()
  })

  await step('reload revalidates index.html and takes hashed assets from cache or a 304', async () => {
    await page.goto(base + '/settings')
    await page.getByTestId('page-settings').waitFor()
    const cdp = await context.newCDPSession(page)
    await cdp.send('Network.enable')
    const seen = new Map()
    const cached = new Set()
    cdp.on('Network.requestServedFromCache', (e) => cached.add(e.requestId))
    cdp.on('Network.responseReceived', (e) => seen.set(e.requestId, e.response))
    await page.reload()
    await page.getByTestId('page-settings').waitFor()
    await page.waitForLoadState('networkidle')
    const all = [...seen.entries()]
    const doc = all.find(([, r]) => new URL(r.url).pathname === '/settings')
    if (!doc) throw new Error('the reload did not fetch the page')
    const [docId, docRes] = doc
    if (cached.has(docId) || docRes.fromDiskCache) throw new Error('index.html came from the cache without revalidation')
    if (docRes.status !== 200 && docRes.status !== 304) throw new Error(`index.html answered ${docRes.status}`)
    const assets = all.filter(([, r]) => new URL(r.url).pathname.startsWith('/assets/'))
    if (assets.length === 0) throw new Error('no hashed assets were requested')
    const fresh = assets.filter(([id, r]) => !(cached.has(id) || r.fromDiskCache || r.fromMemoryCache || r.status === 304))
    if (fresh.length) throw new Error(`assets fetched again with a full response: ${fresh.map(([, r]) => r.url).join(', ')}`)
    await cdp.detach()
  })

  await step('a deep link /jobs/<id> loads the app', async () => {
    if (!state.jobId) throw new Error('no job from the earlier step')
    const p2 = await context.newPage()
    watch(p2)
    await p2.goto(`${base}/jobs/${state.jobId}`)
    await p2.getByTestId('page-job').waitFor()
    const title = await p2.getByTestId('job-title').innerText()
    if (!title.includes('e2e nightly')) throw new Error(`deep link shows ${title}`)
    await p2.close()
  })

  await step('an unknown page shows the app, not a download', async () => {
    const res = await page.goto(`${base}/no/such/page`)
    if (res.status() !== 200 || !(res.headers()['content-type'] ?? '').includes('text/html')) throw new Error(`status ${res.status()} ${res.headers()['content-type']}`)
    await page.getByText('Page not found').waitFor()
  })

  await step('switch to Simplified Chinese and back', async () => {
    await page.goto(base + '/settings')
    await page.getByTestId('locale-select').click()
    await page.locator('.n-base-select-option', { hasText: '简体中文' }).click()
    await page.getByTestId('nav-settings').getByText('设置').waitFor()
    await page.locator('.n-base-select-menu').waitFor({ state: 'hidden' })
    await shoot(page, 'settings-zh')
    await page.reload() // the choice survives a reload
    await page.getByTestId('nav-settings').getByText('设置').waitFor()
    await page.getByTestId('locale-select').click()
    await page.locator('.n-base-select-option', { hasText: 'English' }).click()
    await page.getByTestId('nav-settings').getByText('Settings').waitFor()
  })

  await step('command center and integrations render on desktop and phone, in English and Chinese', async () => {
    for (const [locale, ccTitle, intTitle] of [['en', 'Command center', 'Integrations'], ['zh-CN', '指挥中心', '集成']]) {
      await page.evaluate((l) => localStorage.setItem('bastion.locale', l), locale)
      for (const [path, id, title, shot] of [['/command-center', 'page-command-center', ccTitle, 'command-center'], ['/integrations', 'page-integrations', intTitle, 'integrations']]) {
        await page.goto(base + path)
        await page.getByTestId(id).locator('h1', { hasText: title }).waitFor()
        // The list has loaded: items, or the all-is-well state; integrations always list the Hub.
        if (id === 'page-integrations') await page.getByTestId('integrations-node').first().waitFor()
        else await page.locator('[data-testid="attention-item"], [data-testid="list-empty"]').first().waitFor()
        await shoot(page, `${shot}-${locale}`)
      }
    }
    // The agent job uses the agent's own credential, which the agent holds: nothing is missing.
    if ((await page.getByTestId('integrations-missing').count()) > 0) throw new Error('integrations page shows a missing credential')
    await page.evaluate(() => localStorage.setItem('bastion.locale', 'en'))
    await page.goto(base + '/')
    await page.getByTestId('nav-settings').getByText('Settings').waitFor()
  })

  await step('the maintenance page lists incomplete-run cleanup on desktop and phone, in English and Chinese', async () => {
    for (const [loc, title] of [['en', 'Maintenance'], ['zh-CN', '维护']]) {
      await page.evaluate((l) => localStorage.setItem('bastion.locale', l), loc)
      for (const [viewport, vname] of [[DESKTOP, 'desktop'], [MOBILE, 'phone']]) {
        await page.setViewportSize(viewport)
        await page.goto(base + '/maintenance')
        await page.getByTestId('page-maintenance').locator('h1', { hasText: title }).waitFor()
        // Loaded: cleanup tasks, or the empty state with its next step.
        await page.locator('[data-testid="maint-row"], [data-testid="list-empty"]').first().waitFor()
        await page.waitForLoadState('networkidle').catch(() => {})
        const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth])
        if (sw > iw + 1) throw new Error(`maintenance page (${loc}) is ${sw}px wide on a ${iw}px ${vname}`)
        await page.screenshot({ path: join(SCREENSHOTS, `maintenance-${loc}-${vname}.png`) })
      }
    }
    await page.setViewportSize(DESKTOP)
    await page.evaluate(() => localStorage.setItem('bastion.locale', 'en'))
    await page.goto(base + '/')
    await page.getByTestId('nav-maintenance').getByText('Maintenance').waitFor()
  })

  await step('runtime config, themes (dark then system) and About, on desktop and phone, in English and Chinese', async () => {
    const labels = { en: { dark: 'Dark', system: 'System' }, 'zh-CN': { dark: '深色', system: '跟随系统' } }
    const pickTheme = async (label) => {
      await page.getByTestId('theme-select').click()
      await page.locator('.n-base-select-option', { hasText: label }).click()
      await page.locator('.n-base-select-menu').waitFor({ state: 'hidden' })
    }
    const docTheme = () => page.evaluate(() => document.documentElement.dataset.theme)
    const systemTheme = await page.evaluate(() => (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'))
    // An admin saves a live setting: it is in effect at once.
    await page.goto(base + '/settings/runtime')
    await page.getByTestId('page-runtime-config').waitFor()
    const days = page.getByTestId('rc-run_retention_days').locator('input')
    await days.fill('90')
    await page.getByTestId('rc-save').click()
    await page.getByTestId('rc-effective-run_retention_days').getByText('90', { exact: true }).waitFor()
    for (const [viewport, vname] of [[DESKTOP, 'desktop'], [MOBILE, 'phone']]) {
      await page.setViewportSize(viewport)
      for (const loc of ['en', 'zh-CN']) {
        await page.evaluate((l) => localStorage.setItem('bastion.locale', l), loc)
        await page.goto(base + '/settings/runtime')
        await page.getByTestId('page-runtime-config').waitFor()
        await page.getByTestId('rc-effective-hub_timezone').waitFor()
        await pickTheme(labels[loc].dark)
        if ((await docTheme()) !== 'dark') throw new Error(`${vname}/${loc}: dark theme not applied`)
        await page.reload() // applied before the app loads, from localStorage
        if ((await docTheme()) !== 'dark') throw new Error(`${vname}/${loc}: dark theme lost on reload`)
        await page.getByTestId('page-runtime-config').waitFor()
        await page.waitForLoadState('networkidle').catch(() => {})
        await page.screenshot({ path: join(SCREENSHOTS, `runtime-config-dark-${loc}-${vname}.png`) })
        await page.goto(base + '/about')
        await page.getByTestId('page-about').waitFor()
        await page.getByTestId('about-version').filter({ hasNotText: '—' }).waitFor()
        await page.waitForLoadState('networkidle').catch(() => {})
        await page.screenshot({ path: join(SCREENSHOTS, `about-dark-${loc}-${vname}.png`) })
        await pickTheme(labels[loc].system)
        if ((await docTheme()) !== systemTheme) throw new Error(`${vname}/${loc}: system theme is ${await docTheme()}, want ${systemTheme}`)
        await page.screenshot({ path: join(SCREENSHOTS, `about-system-${loc}-${vname}.png`) })
      }
    }
    await page.setViewportSize(DESKTOP)
    await page.evaluate(() => localStorage.setItem('bastion.locale', 'en'))
    await page.goto(base + '/settings')
    await page.getByTestId('nav-settings').getByText('Settings').waitFor()
  })

  await step('set a weekly verification on a job, run the drill and see "proven today"', async () => {
    if (!state.jobId) throw new Error('no job from the earlier step')
    await page.goto(`${base}/jobs/${state.jobId}/edit`)
    for (let i = 0; i < 3; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('verify-preset').click()
    await page.locator('.n-base-select-option', { hasText: 'Weekly (Sunday 03:00)' }).click()
    await shoot(page, 'job-editor-verification')
    for (let i = 0; i < 4; i++) await page.getByTestId('editor-next').click()
    await page.getByTestId('review-json').waitFor()
    await page.getByTestId('editor-save').click()
    await page.getByTestId('page-job').waitFor()
    const sched = await page.getByTestId('job-verification').innerText()
    if (sched.trim() !== '0 3 * * 0') throw new Error(`job page shows verification ${sched}`)
    const before = (await page.getByTestId('proof-badge').innerText()).trim()
    if (before !== 'never proven') throw new Error(`before any drill the badge says ${before}`)
    // The earlier step deleted the job's snapshot: back it up again, then drill it.
    await page.getByTestId('run-now').click()
    await page.getByTestId('page-run').waitFor()
    await until('the run to succeed', async () => (await page.getByTestId('run-status').getAttribute('data-status')) === 'success', 60_000)
    await page.goto(`${base}/jobs/${state.jobId}`)
    await page.getByTestId('verify-now').click()
    await until('the drill to prove the job', async () => (await page.getByTestId('proof-badge').innerText()).trim() === 'proven today', 60_000, 500)
    await shoot(page, 'job-proven')
    await page.goto(base + '/jobs')
    const row = page.getByTestId('jobs-table').locator('tr', { hasText: 'e2e nightly' }).first()
    const listed = (await row.getByTestId('proof-badge').innerText()).trim()
    if (listed !== 'proven today') throw new Error(`the job list says ${listed}`)
  })

  await step('the audit log shows the job changes, who made them and from where', async () => {
    await page.goto(base + '/')
    await page.getByTestId('nav-audit').click()
    await page.getByTestId('page-audit').waitFor()
    const row = page.getByTestId('audit-row').filter({ hasText: 'PUT /api/jobs/{id}' }).first()
    await row.waitFor()
    const text = await row.innerText()
    if (!text.includes(USER) || !text.includes('127.0.0.1')) throw new Error(`audit row without the user or the address: ${text}`)
    await shoot(page, 'audit-log')
  })

  await step('add an operator and a viewer on the Users page', async () => {
    await page.goto(base + '/users')
    await page.getByTestId('users-table').waitFor()
    for (const [name, role] of [['olga', 'Operator'], ['victor', 'Viewer']]) {
      await page.getByTestId('user-new').click()
      await page.getByTestId('user-username').locator('input').fill(name)
      await page.getByTestId('user-new-role').click()
      await page.locator('.n-base-select-option', { hasText: role }).click()
      await page.getByTestId('user-password').locator('input').fill(PASSWORD)
      await page.getByTestId('user-save').click()
      await page.getByTestId('user-modal').waitFor({ state: 'hidden' })
      await page.getByTestId('users-table').locator('tr', { hasText: name }).waitFor()
    }
    await shoot(page, 'users')
  })

  await step('create an API token, use it without a session, see its last use, revoke it', async () => {
    await page.goto(base + '/settings')
    await page.getByTestId('token-new').click()
    await page.getByTestId('token-name-input').locator('input').fill('e2e-script')
    await page.getByTestId('token-create').click()
    const token = (await page.getByTestId('token-value').innerText()).trim()
    if (!token.startsWith('bst_')) throw new Error(`token shown: ${token}`)
    await page.getByTestId('token-copy').click()
    if ((await page.evaluate(() => navigator.clipboard.readText())) !== token) throw new Error('the copy button did not copy the token')
    await page.getByTestId('token-done').click()
    // A script: no cookie, no CSRF token.
    const res = await fetch(`${base}/api/jobs`, { headers: { Authorization: `Bearer ${token}` } })
    if (res.status !== 200) throw new Error(`bearer GET /api/jobs answered ${res.status}`)
    const write = await fetch(`${base}/api/jobs/${state.jobId}/run`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } })
    if (write.status !== 403) throw new Error(`a viewer token ran a job: ${write.status}`)
    await page.reload()
    const row = page.getByTestId('tokens-panel').locator('tr', { hasText: 'e2e-script' })
    const used = (await row.getByTestId('token-last-used').innerText()).trim()
    if (!used || used === 'Never used') throw new Error(`last used shows ${used}`)
    await shoot(page, 'settings-tokens')
    await row.getByTestId('token-revoke').click()
    await page.locator('.n-dialog').getByRole('button', { name: 'Revoke' }).click()
    await row.waitFor({ state: 'detached' })
    const after = await fetch(`${base}/api/jobs`, { headers: { Authorization: `Bearer ${token}` } })
    if (after.status !== 401) throw new Error(`a revoked token answered ${after.status}`)
  })

  /** Logs out whoever is signed in and signs in as user. */
  async function signInAs(user) {
    await page.goto(base + '/')
    await page.getByTestId('logout').click()
    await page.getByTestId('login-username').locator('input').fill(user)
    await page.getByTestId('login-password').locator('input').fill(PASSWORD)
    await page.getByTestId('login-submit').click()
    await page.getByTestId('page-dashboard').waitFor()
  }
  /** The data-testids among ids that page shows now. */
  async function shown(ids) {
    const out = []
    for (const id of ids) if ((await page.getByTestId(id).count()) > 0) out.push(id)
    return out
  }

  await step('a viewer sees jobs, runs and settings but no action', async () => {
    if (!state.jobId || !state.runId) throw new Error('no job or run from the earlier steps')
    await signInAs('victor')
    if ((await page.getByTestId('whoami-role').innerText()).trim() !== 'Viewer') throw new Error('the top bar does not say Viewer')
    if ((await page.getByTestId('nav-users').count()) > 0) throw new Error('a viewer sees the Users page in the menu')
    await page.goto(base + '/jobs')
    await page.getByTestId('jobs-table').waitFor()
    if ((await shown(['job-new'])).length) throw new Error('a viewer may create a job')
    await page.goto(`${base}/jobs/${state.jobId}`)
    await page.getByTestId('job-title').waitFor()
    await page.locator('.n-tabs-tab', { hasText: 'Snapshots' }).click()
    await page.getByTestId('snapshots-table').locator('[data-status]').first().waitFor()
    const onJob = await shown(['run-now', 'verify-now', 'job-edit', 'job-deploy', 'job-delete', 'snap-restore', 'snap-pin', 'snap-delete'])
    if (onJob.length) throw new Error(`a viewer sees ${onJob.join(', ')} on the job page`)
    await shoot(page, 'job-viewer')
    await page.goto(`${base}/runs/${state.runId}`)
    await page.getByTestId('run-status').waitFor()
    if ((await shown(['run-restore', 'run-cancel'])).length) throw new Error('a viewer may restore or cancel')
    await page.goto(base + '/settings')
    await page.getByTestId('password-panel').waitFor()
    const onSettings = await shown(['settings-credentials', 'tokens-panel', 'drills-save'])
    if (onSettings.length) throw new Error(`a viewer sees ${onSettings.join(', ')} in settings`)
    await page.goto(base + '/agents')
    await page.getByTestId('agents-table').waitFor()
    if ((await shown(['agent-enroll', 'agent-sync', 'agent-credentials', 'agents-bulk'])).length) throw new Error('a viewer may manage agents')
    await page.goto(base + '/bulk-operations')
    await page.getByTestId('bulk-row').first().waitFor()
    if ((await shown(['bulk-new'])).length) throw new Error('a viewer may start a bulk operation')
  })

  await step('an operator may run and restore, but not edit, and sees no credentials', async () => {
    await signInAs('olga')
    if ((await page.getByTestId('whoami-role').innerText()).trim() !== 'Operator') throw new Error('the top bar does not say Operator')
    await page.goto(`${base}/jobs/${state.jobId}`)
    await page.getByTestId('job-title').waitFor()
    await page.locator('.n-tabs-tab', { hasText: 'Snapshots' }).click()
    await page.getByTestId('snapshots-table').locator('[data-status]').first().waitFor()
    const onJob = await shown(['run-now', 'verify-now', 'job-edit', 'job-delete', 'snap-restore', 'snap-pin', 'snap-delete'])
    if (onJob.join() !== 'run-now,verify-now,snap-restore') throw new Error(`an operator sees ${onJob.join(', ')} on the job page`)
    await page.goto(`${base}/runs/${state.runId}`)
    await page.getByTestId('run-restore').waitFor()
    await page.goto(base + '/agents')
    await page.getByTestId('agents-table').waitFor()
    await page.getByTestId('agent-sync').first().waitFor()
    if ((await shown(['agent-enroll', 'agent-credentials'])).length) throw new Error('an operator may manage agents')
    await page.goto(base + '/settings')
    await page.getByTestId('password-panel').waitFor()
    if ((await shown(['settings-credentials', 'tokens-panel'])).length) throw new Error('an operator sees credentials or tokens')
    // The Hub refuses what the UI hides: the users list answers 403 to an operator.
    expectedStatus.add(`${base}/api/users`)
    const status = await page.evaluate(async () => (await fetch('/api/users')).status)
    if (status !== 403) throw new Error(`GET /api/users answered ${status} to an operator`)
    await shoot(page, 'settings-operator')
  })

  await step('logout', async () => {
    await page.goto(base + '/')
    await page.getByTestId('logout').click()
    await page.getByTestId('login-username').waitFor()
  })

  // A request that failed after the last step's check (a poll, a late socket) still fails the run.
  const late = newProblems()
  if (late.length) {
    results.push({ name: 'no errors after the last step', status: 'fail', detail: late.join('\n  ') })
    console.log(`FAIL  no errors after the last step\n  ${late.join('\n  ')}`)
  }
  await context.close()
  receiver.close()
  killAll()
  const n = (s) => results.filter((r) => r.status === s).length
  console.log(`\n${n('pass')} passed, ${n('fail')} failed`)
  process.exitCode = n('fail') > 0 ? 1 : 0
}

main().catch((err) => {
  console.error(err)
  killAll()
  process.exitCode = 1
})
