//go:build !linux

package backup

// readXattrs records no extended attributes where the platform has no portable API for them.
func readXattrs(string, bool) map[string]string { return nil }
