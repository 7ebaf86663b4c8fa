import { useDialog } from 'naive-ui'
import { useI18n } from 'vue-i18n'

/** Every destructive action goes through here: a dialog that must be confirmed explicitly. */
export function useConfirm() {
  const dialog = useDialog()
  const { t } = useI18n()
  return (content: string, opts: { title?: string; positive?: string } = {}): Promise<boolean> =>
    new Promise((resolve) => {
      let settled = false
      const done = (v: boolean) => {
        if (!settled) {
          settled = true
          resolve(v)
        }
      }
      dialog.warning({
        title: opts.title ?? t('common.confirmTitle'),
        content,
        positiveText: opts.positive ?? t('common.confirm'),
        negativeText: t('common.cancel'),
        onPositiveClick: () => done(true),
        onNegativeClick: () => done(false),
        onClose: () => done(false),
        onMaskClick: () => done(false),
        onAfterLeave: () => done(false),
      })
    })
}
