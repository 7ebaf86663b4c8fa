// Package format is the on-target layout of an archive_v1 snapshot (backup.md §7): part names,
// manifest.json and the lines of entries.jsonl.zst. Backup writes it and restore reads it;
// snapshots written by the original Rust implementation use the same bytes.
package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Constants of the format.
const (
	FormatVersion = 1
	PartPrefix    = "payload.part"
	HashAlgBLAKE3 = "blake3"

	FormatArchiveV1 = "archive_v1"
	FormatRawTreeV1 = "raw_tree_v1"

	EncryptionNone = "none"
	EncryptionAge  = "age"

	KindFile    = "file"
	KindDir     = "dir"
	KindSymlink = "symlink"

	// ZstdLevel is the zstd level of the payload and the index.
	ZstdLevel = 3
)

// PartName is the name of the i-th part (1-based): payload.part000001.
func PartName(i int) string { return fmt.Sprintf("%s%06d", PartPrefix, i) }

// IsPartName reports whether name is a payload part's: the prefix and 6 or more ASCII
// digits, nothing else (no sign, no separator). It is the one definition both the writer's
// tests and the restore's manifest check use, so they cannot drift apart.
func IsPartName(name string) bool {
	digits, ok := strings.CutPrefix(name, PartPrefix)
	if !ok || len(digits) < 6 {
		return false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Manifest is manifest.json. Field order is the order written.
type Manifest struct {
	FormatVersion int        `json:"format_version"`
	JobID         string     `json:"job_id"`
	RunID         string     `json:"run_id"`
	StartedAt     string     `json:"started_at"` // RFC 3339 UTC
	EndedAt       string     `json:"ended_at"`
	Pipeline      Pipeline   `json:"pipeline"`
	Artifacts     []Part     `json:"artifacts"`
	EntryIndex    EntryIndex `json:"entry_index"`
}

// Pipeline describes how the payload was produced.
type Pipeline struct {
	Format        string `json:"format"` // absent in old manifests: archive_v1
	Tar           string `json:"tar"`
	Compression   string `json:"compression"`
	Encryption    string `json:"encryption"`
	EncryptionKey string `json:"encryption_key,omitempty"`
	SplitBytes    int64  `json:"split_bytes"`
}

// Part is one payload part, in order.
type Part struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	HashAlg string `json:"hash_alg"`
	Hash    string `json:"hash"` // 64 lowercase hex digits
}

// EntryIndex names the entries index and its line count.
type EntryIndex struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Encode writes the manifest as pretty JSON (two-space indent, like serde_json's pretty printer).
func (m Manifest) Encode() ([]byte, error) {
	if m.Artifacts == nil {
		m.Artifacts = []Part{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// DecodeManifest parses manifest.json, defaulting an absent pipeline.format to archive_v1.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("decode manifest: unsupported format_version %d", m.FormatVersion)
	}
	if m.Pipeline.Format == "" {
		m.Pipeline.Format = FormatArchiveV1
	}
	return &m, nil
}

// Entry is one line of entries.jsonl.zst. path, kind, size, hash_alg and hash are always
// written (hash keys as null when absent); the rest only when set.
type Entry struct {
	Path          string            `json:"path"`
	Kind          string            `json:"kind"`
	Size          int64             `json:"size"`
	HashAlg       *string           `json:"hash_alg"`
	Hash          *string           `json:"hash"`
	Mtime         *int64            `json:"mtime,omitempty"`
	Mode          *uint32           `json:"mode,omitempty"`
	UID           *uint64           `json:"uid,omitempty"`
	GID           *uint64           `json:"gid,omitempty"`
	Xattrs        map[string]string `json:"xattrs,omitempty"`
	SymlinkTarget *string           `json:"symlink_target,omitempty"`
	HardlinkGroup *string           `json:"hardlink_group,omitempty"`
}

// FileEntry is the index record of a regular file with its BLAKE3 hex hash.
func FileEntry(path string, size int64, hash string) Entry {
	alg := HashAlgBLAKE3
	return Entry{Path: path, Kind: KindFile, Size: size, HashAlg: &alg, Hash: &hash}
}

// AppendLine appends e as one JSON line (no HTML escaping, like serde_json).
func (e Entry) AppendLine(dst *bytes.Buffer) error {
	enc := json.NewEncoder(dst)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return fmt.Errorf("encode index entry %q: %w", e.Path, err)
	}
	return nil
}
