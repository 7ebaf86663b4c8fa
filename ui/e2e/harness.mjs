// Starts a real Hub and a real Chromium for the e2e journey. Node built-ins and playwright-core only.
import { spawn } from 'node:child_process'
import { createWriteStream, mkdirSync, mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'

export const UI_DIR = resolve(import.meta.dirname, '..')
export const REPO = resolve(UI_DIR, '..')
export const ARTIFACTS = join(REPO, 'artifacts')
export const SCREENSHOTS = join(ARTIFACTS, 'screenshots')

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer()
    srv.once('error', fail)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => ok(port))
    })
  })
}

/** Polls fn until it returns a truthy value or the deadline passes. */
export async function until(what, fn, timeoutMs = 30_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`)
}

const children = []
export function killAll() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
}
process.on('exit', killAll)

export function spawnLogged(name, cmd, args, opts = {}) {
  mkdirSync(ARTIFACTS, { recursive: true })
  const log = createWriteStream(join(ARTIFACTS, `e2e-${name}.log`))
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
  child.stdout.pipe(log)
  child.stderr.pipe(log)
  children.push(child)
  return child
}

export async function startHub() {
  const bin = join(REPO, 'bin', 'bastion')
  const dataDir = mkdtempSync(join(tmpdir(), 'bastion-e2e-hub-'))
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const child = spawnLogged('hub', bin, ['--data-dir', dataDir, '--port', String(port)], {
    env: { ...process.env, BASTION_UI_DIR: join(UI_DIR, 'dist'), BASTION_HUB_TIMEZONE: 'UTC' },
  })
  let exited = null
  child.on('exit', (code) => (exited = code))
  await until('the Hub to answer /api/health', async () => {
    if (exited !== null) throw new Error(`the Hub exited with ${exited}; see artifacts/e2e-hub.log`)
    const r = await fetch(`${base}/api/health`)
    return r.ok
  })
  return { base, port, dataDir, child, bin }
}

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export async function startBrowser() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'bastion-e2e-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.BASTION_CHROMIUM ?? '/usr/bin/chromium',
    headless: false, // --headless is in the flags, exactly as listed
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 800 },
    permissions: ['clipboard-read', 'clipboard-write'],
  })
  return context
}
