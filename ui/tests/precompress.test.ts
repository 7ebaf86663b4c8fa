// @vitest-environment node
// (the config under test reads import.meta.url as a file URL)
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { precompressDir } from '../vite.config'

function build(files: Record<string, Buffer | string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'precompress-'))
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), data)
  }
  return dir
}

function random(n: number): Buffer {
  const b = Buffer.alloc(n)
  let x = 12345
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

describe('precompressDir', () => {
  const script = 'export function f(a, b) { return a + b }\n'.repeat(500)

  it('writes .br and .gz siblings that decode to the original', () => {
    const dir = build({ 'assets/app-1234.js': script, 'index.html': '<!doctype html>' + '<p>x</p>'.repeat(300) })
    precompressDir(dir)
    const js = join(dir, 'assets/app-1234.js')
    expect(brotliDecompressSync(readFileSync(js + '.br')).toString()).toBe(script)
    expect(gunzipSync(readFileSync(js + '.gz')).toString()).toBe(script)
    expect(readFileSync(js + '.br').length).toBeLessThan(readFileSync(js + '.gz').length)
    expect(readdirSync(dir).sort()).toEqual(['assets', 'index.html', 'index.html.br', 'index.html.gz'])
  })

  it('skips tiny files, compressed formats and variants that are not smaller', () => {
    const dir = build({
      'assets/tiny-1.js': 'x=1',
      'assets/logo-2.png': random(5000),
      'assets/font-3.woff2': random(5000),
      'assets/noise-4.js': random(5000), // incompressible: neither variant would be smaller
    })
    expect(precompressDir(dir)).toEqual([])
    expect(readdirSync(join(dir, 'assets')).sort()).toEqual(['font-3.woff2', 'logo-2.png', 'noise-4.js', 'tiny-1.js'])
  })
})
