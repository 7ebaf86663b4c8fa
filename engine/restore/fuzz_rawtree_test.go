package restore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/bastion-backup/bastion/engine/backup/format"
	"github.com/bastion-backup/bastion/engine/targets"
)

// fuzzBody is what every data/ file of fuzzTarget holds.
const fuzzBody = "pwn"

// fuzzTarget serves fuzzBody for any valid data/ name: the index alone decides what is written.
type fuzzTarget struct{ targets.Target }

func (fuzzTarget) Open(_ context.Context, _ targets.RunRef, name string) (io.ReadCloser, error) {
	if err := targets.ValidateName(name); err != nil || !strings.HasPrefix(name, "data/") {
		return nil, &targets.Error{Kind: targets.KindConfig, Code: "fuzz_config", Op: "open " + name, Err: targets.ErrInvalidPath}
	}
	return io.NopCloser(strings.NewReader(fuzzBody)), nil
}

// FuzzRawTreeIndex: whatever a raw_tree_v1 index says, the restore writes nothing outside the
// destination, never touches the file beside it, and plants no set-id bits unless asked.
func FuzzRawTreeIndex(f *testing.F) {
	sum := blake3.Sum256([]byte(fuzzBody))
	h := hex.EncodeToString(sum[:])
	file := func(p string, extra string) string {
		return `{"path":"` + p + `","kind":"file","size":3,"hash_alg":"blake3","hash":"` + h + `"` + extra + "}\n"
	}
	link := func(p, target string) string {
		return `{"path":"` + p + `","kind":"symlink","size":0,"hash_alg":null,"hash":null,"symlink_target":"` + target + `"}` + "\n"
	}
	dir := func(p string, mode int) string {
		return `{"path":"` + p + `","kind":"dir","size":0,"hash_alg":null,"hash":null,"mode":` + itoa(mode) + `,"mtime":1600000000}` + "\n"
	}
	for _, seed := range []string{
		file("a.txt", "") + dir("d", 0o40755) + file("d/b", `,"mode":33188,"mtime":1600000000`),
		link("x", "../outside") + file("x/secret", ""),
		dir("x", 0o40777) + link("x", "../outside/secret"),
		file("../outside/secret", "") + file("/abs", "") + file("a/../../outside/secret", ""),
		file("h1", `,"hardlink_group":"1:2"`) + link("h1", "../outside/secret") + file("h2", `,"hardlink_group":"1:2"`),
		link("s", "../outside") + file("h", `,"hardlink_group":"9:9"`) + file("s/secret", `,"hardlink_group":"9:9"`),
		file("su", `,"mode":36333`) + dir("t", 0o41777),
		file("f", "") + dir("f", 0o40700) + file("f/g", ""),
		file("x", `,"xattrs":{"security.capability":"AQIDBA==","user.a":"eA=="}`),
		`{"path":"d","kind":"fifo","size":0,"hash_alg":null,"hash":null}` + "\n" + "not json\n",
	} {
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, index []byte, keep bool) {
		ar := newFuzzArena(t)
		d, err := openDestDir(ar.dest)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var res Result
		rt := &rawRestorer{
			x: &extractor{d: d, policy: ConflictOverwrite, keepSpecial: keep, res: &res, buf: make([]byte, 32<<10)},
			t: fuzzTarget{}, run: targets.RunRef{JobID: "j", RunID: "r"}, first: map[string]string{}, made: map[string]bool{},
		}
		sc := bufio.NewScanner(bytes.NewReader(index))
		for sc.Scan() {
			var e format.Entry
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if err = rt.entry(context.Background(), e); err != nil {
				break
			}
		}
		if err == nil {
			err = rt.finishDirs()
		}
		var re *Error
		if err != nil && !(errors.As(err, &re) && (re.Code == CodeIO || re.Code == CodeConflict || re.Code == CodePart)) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		ar.check(t, keep)
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
