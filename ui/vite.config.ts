import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The dev server forwards the API and the agent endpoints (WebSockets included) to a Hub running
// on its default address, so `npm run dev` works against a real backend (docs/ui-development.md).
const hub = process.env.BASTION_DEV_HUB ?? 'http://127.0.0.1:9876'

export default defineConfig({
  plugins: [vue()],
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
  },
})
