package doctor

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/engine/clock"
	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/storage"
	"github.com/rs/zerolog"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	dir string
	db  *storage.DB
}

// setup makes a data directory the way the Hub's start does: a migrated database and a new
// master.key. The database stays open (as under a running Hub) until the test ends.
func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data") // created 0700 by storage.Open, as at a Hub's first start
	db, err := storage.Open(ctx, filepath.Join(dir, DBFile), storage.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, _, err := secrets.OpenKeyring(ctx, db, filepath.Join(dir, secrets.MasterKeyFile), now); err != nil {
		t.Fatal(err)
	}
	return &testBundle{dir: dir, db: db}
}

func plentyOfDisk(string) (uint64, uint64, error) { return 50 << 30, 100 << 30, nil }

func (b *testBundle) run(t *testing.T) Report {
	t.Helper()
	return Run(context.Background(), Options{DataDir: b.dir, Now: now, Disk: plentyOfDisk})
}

func (b *testBundle) putSecret(t *testing.T) {
	t.Helper()
	keys, err := secrets.ReadKeyringFile(filepath.Join(b.dir, secrets.MasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	store := secrets.NewStore(b.db, keys, clock.Real{})
	if err := store.Put(context.Background(), "hub", "webdav", "nas", []byte(`{"username":"u","password":"p"}`)); err != nil {
		t.Fatal(err)
	}
}

func (b *testBundle) insertJob(t *testing.T, id, target string) {
	t.Helper()
	spec := `{"v":1,"type":"filesystem","source":{"paths":["/data"]},"target":` + target + `}`
	err := b.db.Writer().InsertJob(context.Background(), storage.Job{ID: id, Name: id, ScheduleTimezone: "UTC",
		OverlapPolicy: "queue", MissedRunPolicy: "run_once", SpecJSON: spec, CreatedAt: now.Unix(), UpdatedAt: now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
}

// rawExec changes the database behind storage's back, as damage or another Bastion version would.
func (b *testBundle) rawExec(t *testing.T, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(b.dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
}

func find(t *testing.T, rep Report, name string) Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep.Checks)
	return Check{}
}

func wantStatus(t *testing.T, rep Report, name string, st Status, msgPart string) Check {
	t.Helper()
	c := find(t, rep, name)
	if c.Status != st || !strings.Contains(c.Message, msgPart) {
		t.Fatalf("%s = %s %q, want %s containing %q", name, c.Status, c.Message, st, msgPart)
	}
	if st != OK && c.Fix == "" {
		t.Fatalf("%s is %s without a fix", name, st)
	}
	if st == Fail && rep.OK {
		t.Fatal("report ok with a FAIL")
	}
	return c
}

func TestFreshDataDirIsHealthy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rep := b.run(t)
	if !rep.OK {
		t.Fatalf("fresh data dir: %+v", rep.Checks)
	}
	for _, c := range rep.Checks {
		if c.Status != OK {
			t.Errorf("%s = %s %q", c.Name, c.Status, c.Message)
		}
	}
	for _, name := range []string{"data_dir", "database", "schema", "master_key", "disk_space", "targets", "clock"} {
		find(t, rep, name)
	}
	wantStatus(t, rep, "schema", OK, "up to date")
}

func TestMasterKey(t *testing.T) {
	t.Parallel()
	t.Run("AccessibleToOthers", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := os.Chmod(filepath.Join(b.dir, secrets.MasterKeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
		c := wantStatus(t, b.run(t), "master_key", Fail, "accessible to other users")
		if !strings.Contains(c.Fix, "chmod 600") {
			t.Errorf("fix = %q", c.Fix)
		}
	})
	t.Run("MissingWhileSecretsExist", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.putSecret(t)
		if err := os.Remove(filepath.Join(b.dir, secrets.MasterKeyFile)); err != nil {
			t.Fatal(err)
		}
		c := wantStatus(t, b.run(t), "master_key", Fail, "holds 1 encrypted secrets")
		if !strings.Contains(c.Fix, "keypack import") {
			t.Errorf("fix = %q", c.Fix)
		}
	})
	t.Run("MissingWithoutSecrets", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := os.Remove(filepath.Join(b.dir, secrets.MasterKeyFile)); err != nil {
			t.Fatal(err)
		}
		rep := b.run(t)
		wantStatus(t, rep, "master_key", OK, "creates one")
		if _, err := os.Stat(filepath.Join(b.dir, secrets.MasterKeyFile)); !os.IsNotExist(err) {
			t.Fatalf("doctor created master.key: %v", err)
		}
	})
	t.Run("FromAnotherInstallation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.putSecret(t)
		other, err := secrets.NewKeyring(now)
		if err != nil {
			t.Fatal(err)
		}
		if err := secrets.WriteKeyringFile(filepath.Join(b.dir, secrets.MasterKeyFile), other); err != nil {
			t.Fatal(err)
		}
		rep := b.run(t)
		wantStatus(t, rep, "master_key", Fail, "does not decrypt")
		// Key material never reaches the report.
		raw, _ := os.ReadFile(filepath.Join(b.dir, secrets.MasterKeyFile))
		var doc struct {
			Keys []struct {
				Key string `json:"key"`
			} `json:"keys"`
		}
		out, _ := json.Marshal(rep)
		if json.Unmarshal(raw, &doc) == nil {
			for _, k := range doc.Keys {
				if k.Key != "" && strings.Contains(string(out), k.Key) {
					t.Fatal("report contains key material")
				}
			}
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := os.WriteFile(filepath.Join(b.dir, secrets.MasterKeyFile), []byte("not a keyring"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, b.run(t), "master_key", Fail, "refuses to start")
	})
}

func TestCorruptDatabaseFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.db.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, DBFile)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("garbage!", 16)), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep := b.run(t)
	wantStatus(t, rep, "database", Fail, "cannot be read")
	if rep.OK {
		t.Fatal("report ok with a corrupt database")
	}
}

func TestDamagedPageFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insertJob(t, "j1", `{"type":"local_dir","base_dir":"`+t.TempDir()+`"}`)
	if err := b.db.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, DBFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the middle of the file (past the header page) with zeros-and-junk pages.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("\xff\x00junk", 1024))
	if _, err := f.WriteAt(junk, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep := b.run(t)
	if c := find(t, rep, "database"); c.Status != Fail {
		t.Fatalf("database = %s %q", c.Status, c.Message)
	}
	if rep.OK {
		t.Fatal("report ok with a damaged database")
	}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	t.Run("Behind", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		newest := storage.SchemaVersion()
		b.rawExec(t, "DELETE FROM schema_migrations WHERE version = ?", newest)
		rep := b.run(t)
		wantStatus(t, rep, "schema", OK, "1 migrations will be applied")
		if !rep.OK {
			t.Fatal("a database behind this binary is not a failure")
		}
		// Doctor does not migrate.
		rep = b.run(t)
		wantStatus(t, rep, "schema", OK, "1 migrations will be applied")
	})
	t.Run("Ahead", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.rawExec(t, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (9999, '9999_future', 0)")
		wantStatus(t, b.run(t), "schema", Fail, "9999")
	})
}

func TestTargets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exists := t.TempDir()
	missing := filepath.Join(t.TempDir(), "not", "mounted")
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b.insertJob(t, "good", `{"type":"local_dir","base_dir":"`+exists+`"}`)
	b.insertJob(t, "missing", `{"type":"local_dir","base_dir":"`+missing+`"}`)
	b.insertJob(t, "file", `{"type":"local_dir","base_dir":"`+file+`"}`)
	b.insertJob(t, "dav", `{"type":"webdav","base_url":"https://dav.example/backups","secret_name":"nas"}`)
	b.insertJob(t, "archived", `{"type":"local_dir","base_dir":"/nowhere/at/all"}`)
	if err := b.db.Writer().ArchiveJob(context.Background(), "archived", now.Unix()); err != nil {
		t.Fatal(err)
	}
	rep := b.run(t)
	wantStatus(t, rep, `target "good"`, OK, "writable")
	wantStatus(t, rep, `target "missing"`, Warn, "does not exist")
	wantStatus(t, rep, `target "file"`, Fail, "not a directory")
	wantStatus(t, rep, `target "dav"`, OK, "not checked")
	for _, c := range rep.Checks {
		if c.Name == `target "archived"` {
			t.Fatal("archived job checked")
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("doctor created the missing base_dir: %v", err)
	}
}

func TestClockBehindNewestRunFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.insertJob(t, "j", `{"type":"local_dir","base_dir":"`+t.TempDir()+`"}`)
	err := b.db.Writer().InsertRun(context.Background(), storage.Run{ID: "r1", JobID: "j", Status: storage.RunSuccess,
		StartedAt: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.run(t), "clock", Fail, "went backwards")
	// Within the slack (an NTP step) is fine.
	rep := Run(context.Background(), Options{DataDir: b.dir, Now: now.Add(time.Hour - 30*time.Second), Disk: plentyOfDisk})
	wantStatus(t, rep, "clock", OK, "after the newest run")
}

func TestLowDiskWarns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, disk := range map[string]DiskUsage{
		"Bytes":    func(string) (uint64, uint64, error) { return 500 << 20, 10 << 30, nil },
		"Fraction": func(string) (uint64, uint64, error) { return 4 << 30, 100 << 30, nil },
	} {
		rep := Run(context.Background(), Options{DataDir: b.dir, Now: now, Disk: disk})
		wantStatus(t, rep, "disk_space", Warn, "free of")
		if !rep.OK {
			t.Errorf("%s: a warning made the report fail", name)
		}
	}
}

func TestDataDir(t *testing.T) {
	t.Parallel()
	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "nope")
		rep := Run(context.Background(), Options{DataDir: dir, Now: now, Disk: plentyOfDisk})
		wantStatus(t, rep, "data_dir", Fail, "does not exist")
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatal("doctor created the data dir")
		}
	})
	t.Run("WorldAccessible", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := os.Chmod(b.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		rep := b.run(t)
		c := wantStatus(t, rep, "data_dir", Warn, "accessible to every user")
		if !strings.Contains(c.Fix, "chmod 700") || !rep.OK {
			t.Fatalf("fix %q, ok %v", c.Fix, rep.OK)
		}
	})
	t.Run("NoDatabaseYet", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		rep := Run(context.Background(), Options{DataDir: dir, Now: now, Disk: plentyOfDisk})
		if !rep.OK {
			t.Fatalf("empty data dir: %+v", rep.Checks)
		}
		if _, err := os.Stat(filepath.Join(dir, DBFile)); !os.IsNotExist(err) {
			t.Fatal("doctor created the database")
		}
	})
}
