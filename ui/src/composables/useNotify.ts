import { useMessage } from 'naive-ui'
import { errorText } from '@/lib/errors'

/** Toasts; errors always carry the Hub's message and request ID so a user can quote them. */
export function useNotify() {
  const message = useMessage()
  return {
    ok: (text: string) => message.success(text),
    info: (text: string) => message.info(text),
    warn: (text: string) => message.warning(text, { duration: 8000, closable: true }),
    error: (err: unknown) => message.error(errorText(err), { duration: 8000, closable: true }),
  }
}
