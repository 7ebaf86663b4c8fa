package backup

// InjectOpenFault makes opening path fail with err (fault injection).
func InjectOpenFault(path string, err error) { openFaults.Store(path, err) }

// InjectAfterCopy runs fn right after path's body was archived, before the consistency check.
func InjectAfterCopy(path string, fn func()) { afterCopyHooks.Store(path, fn) }
