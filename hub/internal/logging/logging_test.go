package logging

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]zerolog.Level{
		"": zerolog.InfoLevel, "info": zerolog.InfoLevel, "DEBUG": zerolog.DebugLevel,
		"info,tower_http=warn": zerolog.InfoLevel, "tower_http=warn,error": zerolog.ErrorLevel, "warning": zerolog.WarnLevel,
	} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("unknown level accepted")
	}
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time      { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Add(d time.Duration) { f.mu.Lock(); f.t = f.t.Add(d); f.mu.Unlock() }

func TestDailyRotationKeepsNewestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bastion.log")
	now := &fakeNow{t: time.Date(2026, 11, 20, 23, 59, 0, 0, time.UTC)}
	rf, err := NewRotatingFile(path, "daily", 3, now.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	for range 6 {
		if _, err := rf.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
		now.Add(24 * time.Hour)
	}
	got, _ := filepath.Glob(path + ".*")
	sort.Strings(got)
	want := []string{path + ".2026-11-23", path + ".2026-11-24", path + ".2026-11-25"}
	if len(got) != 3 || got[0] != want[0] || got[2] != want[2] {
		t.Fatalf("files = %v, want %v", got, want)
	}
	st, err := os.Stat(got[2])
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("log file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestHourlyAndNeverRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := &fakeNow{t: time.Date(2026, 11, 20, 10, 30, 0, 0, time.UTC)}
	rf, err := NewRotatingFile(filepath.Join(dir, "h.log"), "hourly", 10, now.Now)
	if err != nil {
		t.Fatal(err)
	}
	rf.Write([]byte("a\n"))
	now.Add(time.Hour)
	rf.Write([]byte("b\n"))
	rf.Close()
	for _, name := range []string{"h.log.2026-11-20-10", "h.log.2026-11-20-11"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || len(b) != 2 {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	rf, err = NewRotatingFile(filepath.Join(dir, "n.log"), "never", 1, now.Now)
	if err != nil {
		t.Fatal(err)
	}
	rf.Write([]byte("x\n"))
	now.Add(48 * time.Hour)
	rf.Write([]byte("y\n"))
	rf.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "n.log")); string(b) != "x\ny\n" {
		t.Errorf("never-rotated file = %q", b)
	}
}

func TestConsoleForPicksByTerminalUnlessTold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		format   string
		terminal bool
		want     bool
	}{
		{"", true, true}, {"", false, false},
		{"auto", true, true}, {"auto", false, false},
		{"console", false, true}, {"CONSOLE", false, true},
		{"json", true, false},
	} {
		got, err := ConsoleFor(tc.format, tc.terminal)
		if err != nil || got != tc.want {
			t.Errorf("ConsoleFor(%q, terminal=%v) = %v, %v; want %v", tc.format, tc.terminal, got, err, tc.want)
		}
	}
	if _, err := ConsoleFor("xml", true); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestConsoleFormatHasNoColourOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	log, closer, err := New(Options{Out: &buf, Console: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	log.Error().Str("job", "nightly").Msg("backup failed")
	out := buf.String()
	if !strings.Contains(out, "backup failed") || !strings.Contains(out, "job=nightly") {
		t.Fatalf("console line missing its parts: %q", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatalf("escape codes in a log written to a pipe: %q", out)
	}
}
