package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/secrets"
	"github.com/bastion-backup/bastion/hub/internal/config"
)

const keypackUsage = `Usage:
  bastion keypack export --out FILE [password]   seal master.key under a password into FILE
  bastion keypack import --in FILE [--force] [password]
                                                restore master.key from a keypack
  bastion keypack rotate                         add a new active key to master.key

Password (export, import): --password-stdin (one line), else --password, else
BASTION_KEYPACK_PASSWORD. Prefer the first two ways: a --password is visible to other users.
Every subcommand takes --data-dir (BASTION_DATA_DIR).
`

// runKeypack backs up (export), restores (import) and rotates master.key. It works on files only;
// run it while the Hub is stopped, or restart the Hub afterwards.
func runKeypack(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, keypackUsage)
		return errors.New("keypack: missing subcommand (export, import or rotate)")
	}
	sub, args := args[0], args[1:]
	fset := flag.NewFlagSet("bastion keypack "+sub, flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, keypackUsage) }
	dataDir := fset.String("data-dir", getenv("BASTION_DATA_DIR"), "data directory holding master.key")
	var out, in, password *string
	var passwordStdin, force *bool
	switch sub {
	case "export":
		out = fset.String("out", "", "keypack file to write")
	case "import":
		in = fset.String("in", "", "keypack file to read")
		force = fset.Bool("force", false, "replace an existing master.key (the old one is kept aside)")
	case "rotate":
	default:
		fmt.Fprint(stderr, keypackUsage)
		return fmt.Errorf("keypack: unknown subcommand %q", sub)
	}
	if sub != "rotate" {
		password = fset.String("password", "", "keypack password (visible in the process list; prefer --password-stdin)")
		passwordStdin = fset.Bool("password-stdin", false, "read the password from the first line of standard input")
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("keypack %s: unexpected argument %q", sub, fset.Arg(0))
	}
	dir, err := config.ResolveDataDir(*dataDir)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, secrets.MasterKeyFile)

	switch sub {
	case "rotate":
		return keypackRotate(keyPath, stdout)
	case "export":
		if *out == "" {
			return errors.New("keypack export: --out FILE is required")
		}
	case "import":
		if *in == "" {
			return errors.New("keypack import: --in FILE is required")
		}
	}
	pw, err := keypackPassword(*password, *passwordStdin, fset, getenv, stdin, stderr)
	if err != nil {
		return fmt.Errorf("keypack %s: %w", sub, err)
	}
	if sub == "export" {
		return keypackExport(keyPath, *out, pw, stdout)
	}
	return keypackImport(keyPath, *in, pw, *force, stdout)
}

// keypackPassword takes the password from stdin, the flag or the environment, in that order of
// preference, and refuses an empty one. It is never echoed.
func keypackPassword(flagValue string, fromStdin bool, fset *flag.FlagSet, getenv func(string) string, stdin io.Reader, stderr io.Writer) (string, error) {
	flagSet := false
	fset.Visit(func(f *flag.Flag) { flagSet = flagSet || f.Name == "password" })
	switch {
	case fromStdin && flagSet:
		return "", errors.New("give the password one way: --password or --password-stdin, not both")
	case fromStdin:
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if pw == "" {
			return "", errors.New("the password read from standard input is empty")
		}
		return pw, nil
	case flagSet:
		fmt.Fprintln(stderr, "warning: --password is visible to other users of this machine; prefer --password-stdin or BASTION_KEYPACK_PASSWORD")
		if flagValue == "" {
			return "", errors.New("--password is empty")
		}
		return flagValue, nil
	}
	if pw := getenv("BASTION_KEYPACK_PASSWORD"); pw != "" {
		return pw, nil
	}
	return "", errors.New("a password is required: --password-stdin, --password or BASTION_KEYPACK_PASSWORD")
}

func keypackExport(keyPath, out, password string, stdout io.Writer) error {
	k, err := secrets.ReadKeyringFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keypack export: there is no %s to export (the Hub creates it on first start; is --data-dir right?)", keyPath)
	}
	if err != nil {
		return fmt.Errorf("keypack export: %w", err)
	}
	pack, err := secrets.ExportKeypack(k, password, time.Now())
	if err != nil {
		return err
	}
	if err := secrets.WriteFileAtomic(out, pack); err != nil {
		return fmt.Errorf("keypack export: %w", err)
	}
	fmt.Fprintf(stdout, "exported %d key(s) (active key id %d) to %s\nkeep it and its password apart from the data directory's backups\n", len(k.KIDs()), k.ActiveKID(), out)
	return nil
}

func keypackImport(keyPath, in, password string, force bool, stdout io.Writer) error {
	_, statErr := os.Lstat(keyPath)
	exists := statErr == nil
	if exists && !force {
		return fmt.Errorf("keypack import: %s already exists; use --force to replace it (the current one is kept aside)", keyPath)
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("keypack import: %w", err)
	}
	k, err := secrets.ImportKeypack(data, password)
	if err != nil {
		return err // master.key is untouched
	}
	if exists {
		// Copy, then replace atomically: whatever fails, master.key is the old key or the new one.
		old, err := os.ReadFile(keyPath)
		if err != nil {
			return fmt.Errorf("keypack import: keep the current master.key aside: %w", err)
		}
		aside := fmt.Sprintf("%s.replaced-%d", keyPath, time.Now().Unix())
		if err := secrets.WriteFileAtomic(aside, old); err != nil {
			return fmt.Errorf("keypack import: keep the current master.key aside: %w", err)
		}
		fmt.Fprintf(stdout, "the previous master.key was copied to %s\n", aside)
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return fmt.Errorf("keypack import: %w", err)
	}
	if err := secrets.WriteKeyringFile(keyPath, k); err != nil {
		return fmt.Errorf("keypack import: %w", err)
	}
	fmt.Fprintf(stdout, "imported %d key(s) (active key id %d) into %s; start (or restart) the Hub\n", len(k.KIDs()), k.ActiveKID(), keyPath)
	return nil
}

func keypackRotate(keyPath string, stdout io.Writer) error {
	k, err := secrets.ReadKeyringFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keypack rotate: there is no %s (the Hub creates it on first start; is --data-dir right?)", keyPath)
	}
	if err != nil {
		return fmt.Errorf("keypack rotate: %w", err)
	}
	next, err := k.Rotate(time.Now())
	if err != nil {
		return err
	}
	if err := secrets.WriteKeyringFile(keyPath, next); err != nil {
		return fmt.Errorf("keypack rotate: %w", err)
	}
	fmt.Fprintf(stdout, "active key id %d → %d; older keys stay to read existing secrets\n"+
		"restart the Hub to use the new key, and export a new keypack: older ones lack it\n", k.ActiveKID(), next.ActiveKID())
	return nil
}
