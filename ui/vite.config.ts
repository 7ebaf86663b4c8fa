import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath, URL } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import type { Plugin } from 'vite'
import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The dev server forwards the API and the agent endpoints (WebSockets included) to a Hub running
// on its default address, so `npm run dev` works against a real backend (docs/ui-development.md).
const hub = process.env.BASTION_DEV_HUB ?? 'http://127.0.0.1:9876'

// Precompression: brotli (.br) and gzip (.gz) siblings next to each compressible file of a build,
// so the Hub serves them with sendfile instead of compressing per request (httpapi/webui picks the
// one the browser accepts). node:zlib has both codecs: no dependency.

// Text formats; images and fonts (png, woff2, …) are compressed already.
export const compressibleExtensions = new Set([
  '.js', '.mjs', '.css', '.html', '.svg', '.json', '.txt', '.xml', '.wasm', '.map', '.ico',
])

// Below this, compression saves less than the bytes of a response's headers.
export const minSize = 1024

export interface Written {
  file: string // relative to the build directory, with the sibling's extension
  size: number
  original: number
}

// precompressDir compresses every eligible file under dir and keeps a variant only when it is
// smaller than the original.
export function precompressDir(dir: string): Written[] {
  const written: Written[] = []
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    const ext = extname(entry.name).toLowerCase()
    if (!compressibleExtensions.has(ext)) continue
    const data = readFileSync(path)
    if (data.length < minSize) continue
    const variants: [string, Buffer][] = [
      ['.br', brotliCompressSync(data, {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
          [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
          [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        },
      })],
      ['.gz', gzipSync(data, { level: 9 })],
    ]
    for (const [suffix, compressed] of variants) {
      if (compressed.length >= data.length) continue
      writeFileSync(path + suffix, compressed)
      written.push({ file: path.slice(dir.length + 1) + suffix, size: compressed.length, original: data.length })
    }
  }
  return written
}

// precompress is the Vite plugin: it runs once the build is written to its output directory.
export function precompress(): Plugin {
  return {
    name: 'bastion-precompress',
    apply: 'build',
    enforce: 'post',
    writeBundle(options) {
      if (options.dir) precompressDir(options.dir)
    },
  }
}

export default defineConfig({
  // precompress writes .br/.gz siblings the Hub serves as they are (docs/ui-development.md).
  plugins: [vue(), precompress()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  server: {
    proxy: {
      '/api': { target: hub, changeOrigin: false, ws: true },
      '/agent': { target: hub, changeOrigin: false, ws: true },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1500,
    rolldownOptions: {
      output: {
        // Big libraries change rarely: separate chunks keep their cache entries across app releases.
        codeSplitting: {
          groups: [
            { name: 'vue', test: /node_modules[\\/](@vue|vue|vue-router|pinia|vue-i18n|@intlify)[\\/]/, priority: 20 },
            { name: 'echarts', test: /node_modules[\\/](echarts|zrender|vue-echarts|tslib)[\\/]/, priority: 10 },
            { name: 'naive', test: /node_modules[\\/](naive-ui|vueuc|vooks|css-render|@css-render|seemly|treemate|evtd|vdirs|date-fns|date-fns-tz|lodash-es|async-validator)[\\/]/, priority: 10 },
          ],
        },
      },
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.test.ts'],
    setupFiles: ['tests/setup.ts'],
    // The job editor's tests walk every step of a mounted wizard; on a loaded 2-core machine one
    // takes several seconds, past vitest's 5 s default. Timeouts here catch hangs, not slowness.
    testTimeout: 30000,
  },
})
