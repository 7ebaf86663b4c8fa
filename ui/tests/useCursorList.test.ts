// useCursorList: the first page replaces the list, "Load more" appends by cursor, and a failure
// keeps what is shown (first page: error in place; later page: the rows stay, cursor kept).
import { describe, expect, it } from 'vitest'
import { defineComponent, h } from 'vue'
import { mount } from '@vue/test-utils'
import { NMessageProvider } from 'naive-ui'
import { useCursorList, type CursorPage } from '@/composables/useCursorList'

function harness(fetchPage: (after?: string) => Promise<CursorPage<number>>) {
  let list!: ReturnType<typeof useCursorList<number>>
  const Inner = defineComponent({
    setup() {
      list = useCursorList(fetchPage)
      return () => null
    },
  })
  mount(defineComponent({ render: () => h(NMessageProvider, () => h(Inner)) }), { attachTo: document.body })
  return list
}

describe('useCursorList', () => {
  it('loads, appends by cursor, and keeps the rows when a later page fails', async () => {
    const asked: (string | undefined)[] = []
    let failNext = false
    const list = harness(async (after) => {
      asked.push(after)
      if (failNext) throw new Error('boom')
      return after ? { items: [3], next_cursor: null } : { items: [1, 2], next_cursor: 'c1' }
    })
    await list.load()
    expect(list.items.value).toEqual([1, 2])
    failNext = true
    await list.loadMore()
    expect(list.items.value).toEqual([1, 2])
    expect(list.cursor.value).toBe('c1')
    expect(list.error.value).toBeNull()
    failNext = false
    await list.loadMore()
    expect(list.items.value).toEqual([1, 2, 3])
    expect(list.cursor.value).toBeNull()
    await list.loadMore() // no cursor: nothing asked
    expect(asked).toEqual([undefined, 'c1', 'c1'])
  })

  it('shows a failed first page as the error, and clears it once a load works', async () => {
    let fail = true
    const list = harness(async () => {
      if (fail) throw new Error('down')
      return { items: [7] }
    })
    await list.load()
    expect((list.error.value as Error).message).toBe('down')
    expect(list.loading.value).toBe(false)
    fail = false
    await list.load()
    expect(list.error.value).toBeNull()
    expect(list.items.value).toEqual([7])
  })
})
