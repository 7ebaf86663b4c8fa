package restore_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/bastion-backup/bastion/engine/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/bastion-backup/bastion/engine/backup"
	"github.com/bastion-backup/bastion/engine/jobspec"
	"github.com/bastion-backup/bastion/engine/restore"
	"github.com/bastion-backup/bastion/engine/targets"
)

const writerEnv = "BASTION_TEST_SQLITE_WRITER"

func TestMain(m *testing.M) {
	if p := os.Getenv(writerEnv); p != "" {
		sqliteWriter(p)
		return
	}
	os.Exit(m.Run())
}

// sqliteWriter runs in a child process: it commits transactions that each insert a row and
// bump a counter, so any consistent copy has count(rows) == counter. It prints "ready" after
// the first commit and runs until killed.
func sqliteWriter(path string) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	db.SetMaxOpenConns(1)
	for i := 0; ; i++ {
		tx, err := db.Begin()
		if err == nil {
			_, err = tx.Exec("INSERT INTO rows(payload) VALUES (randomblob(512))")
		}
		if err == nil {
			_, err = tx.Exec("UPDATE counter SET n = n + 1")
		}
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

func TestSQLiteLiveSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE rows(id INTEGER PRIMARY KEY, payload BLOB)", "CREATE TABLE counter(n INTEGER)",
		"INSERT INTO counter VALUES (0)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+dbPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("writer did not start: %q %v", line, err)
	}

	tg := newLocalTarget(t)
	s, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"sqlite","source":{"path":"` + dbPath + `","integrity_check":true},
		"target":{"type":"local_dir","base_dir":"/bk"}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Several snapshots while the writer keeps committing: each must be one consistent state.
	for i := 0; i < 3; i++ {
		b := runBackup(t, tg, s, nil)
		if b.summary.SQLite == nil || b.summary.SQLite.SnapshotName != "app.db" || b.summary.SQLite.IntegrityCheck == nil || !b.summary.SQLite.IntegrityCheck.OK {
			t.Fatalf("summary %+v", b.summary.SQLite)
		}
		if ev := b.events.Find("integrity_check"); ev == nil || ev.Level != "info" {
			t.Fatalf("integrity_check event %+v", ev)
		}
		_, dest, err := restoreRun(t, tg, b.runID, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		restored := filepath.Join(dest, "app.db")
		rdb, err := sql.Open("sqlite3", "file:"+restored+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var rows, counter int
		var check string
		if err := rdb.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Fatalf("integrity_check %q %v", check, err)
		}
		if err := rdb.QueryRow("SELECT (SELECT count(*) FROM rows), (SELECT n FROM counter)").Scan(&rows, &counter); err != nil {
			t.Fatal(err)
		}
		rdb.Close()
		if rows != counter || rows == 0 {
			t.Fatalf("inconsistent copy: %d rows, counter %d", rows, counter)
		}
		// Verify re-checks the database from the snapshot.
		vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
			ScratchDir: filepath.Join(t.TempDir(), "v"), SQLiteSnapshot: b.summary.SQLite.SnapshotName})
		if err != nil || !vr.OK || vr.SQLiteOK == nil || !*vr.SQLiteOK || vr.FilesTotal != 1 {
			t.Fatalf("verify %+v %v", vr, err)
		}
	}
}

func TestSQLiteIntegrityFailureUploadsNothing(t *testing.T) {
	t.Parallel()
	dbPath := filepath.Join(t.TempDir(), "bad.db")
	db, _ := sql.Open("sqlite3", "file:"+dbPath)
	db.Exec("CREATE TABLE t(x TEXT)")
	db.Exec("CREATE INDEX tx ON t(x)")
	for i := 0; i < 2000; i++ {
		db.Exec("INSERT INTO t VALUES (?)", fmt.Sprintf("row-%06d-%s", i, string(make([]byte, 40))))
	}
	db.Close()
	// Corrupt a page in the middle of the file (an index or table page), keeping the header.
	b, _ := os.ReadFile(dbPath)
	for i := len(b) / 2; i < len(b)/2+4096 && i < len(b); i++ {
		b[i] = 0x5a
	}
	os.WriteFile(dbPath, b, 0o644)
	tg := newLocalTarget(t)
	s, _ := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"sqlite","source":{"path":"` + dbPath + `","integrity_check":true},"target":{"type":"local_dir","base_dir":"/bk"}}`))
	res, err := tryBackup(t, tg, s, nil)
	var be *backup.Error
	if err == nil || !asBackupErr(err, &be) || (be.Code != backup.CodeIntegrityCheck && be.Code != backup.CodeSQLiteSnapshot) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(tg.Location(targets.RunRef{JobID: jobID, RunID: res.runID})); err == nil {
		t.Fatal("something was uploaded for a corrupt database")
	}
}

func TestVaultwardenRecipe(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	db, _ := sql.Open("sqlite3", "file:"+filepath.Join(data, "db.sqlite3")+"?_journal_mode=WAL")
	db.Exec("CREATE TABLE users(email TEXT)")
	db.Exec("INSERT INTO users VALUES ('a@example.org')")
	// Keep the connection open so -wal and -shm exist during the backup.
	defer db.Close()
	testtool.WriteFile(t, filepath.Join(data, "config.json"), []byte(`{"domain":"x"}`), 0o600, time.Now())
	testtool.WriteFile(t, filepath.Join(data, "rsa_key.pem"), []byte("key"), 0o600, time.Now())
	testtool.WriteFile(t, filepath.Join(data, "attachments", "abc", "file.bin"), testtool.RandBytes(5000, 1), 0o600, time.Now())
	tg := newLocalTarget(t)
	s, err := jobspec.ParseAndValidate([]byte(`{"v":1,"type":"vaultwarden","source":{"data_dir":"` + data + `"},"target":{"type":"local_dir","base_dir":"/bk"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := runBackup(t, tg, s, nil)
	if b.summary.Vaultwarden == nil || b.summary.Vaultwarden.DB != "db.sqlite3" {
		t.Fatalf("summary %+v", b.summary)
	}
	idx := filepath.Join(t.TempDir(), "idx.zst")
	if err := restore.FetchIndex(context.Background(), tg, targets.RunRef{JobID: jobID, RunID: b.runID}, idx); err != nil {
		t.Fatal(err)
	}
	page, err := restore.List(idx, restore.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range page.Entries {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"attachments", "config.json", "db.sqlite3", "rsa_key.pem"}) {
		t.Fatalf("root of the snapshot: %v", names)
	}
	vr, err := restore.Verify(context.Background(), restore.VerifyRequest{JobID: jobID, RunID: b.runID, Target: tg,
		ScratchDir: filepath.Join(t.TempDir(), "v"), SQLiteSnapshot: "db.sqlite3"})
	if err != nil || !vr.OK || vr.FilesTotal != 4 {
		t.Fatalf("verify %+v %v", vr, err)
	}
}

func asBackupErr(err error, be **backup.Error) bool { return errors.As(err, be) }
