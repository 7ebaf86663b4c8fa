package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/bastion-backup/bastion/hub/internal/config"
	"github.com/bastion-backup/bastion/hub/internal/doctor"
)

// errDoctorFailed makes `bastion doctor` exit 1 once the report is printed.
var errDoctorFailed = errors.New("doctor found problems (FAIL above)")

// runDoctor is `bastion doctor`: it checks the data directory without changing it.
func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bastion doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", getenv("BASTION_DATA_DIR"), "the Hub's data directory (env BASTION_DATA_DIR; default: as the Hub picks it)")
	asJSON := fs.Bool("json", false, `print {"ok": bool, "checks": [{"name","status","message","fix"}]}`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bastion doctor: unexpected argument %q", fs.Arg(0))
	}
	dir, err := config.FindDataDir(*dataDir)
	if err != nil {
		return err
	}
	rep := doctor.Run(ctx, doctor.Options{DataDir: dir})
	if err := printReport(stdout, rep, *asJSON); err != nil {
		return err
	}
	if !rep.OK {
		return errDoctorFailed
	}
	return nil
}

func printReport(w io.Writer, rep doctor.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, c := range rep.Checks {
		line := fmt.Sprintf("%-4s  %-12s %s\n", c.Status, c.Name, c.Message)
		if c.Fix != "" {
			line += fmt.Sprintf("      %-12s fix: %s\n", "", c.Fix)
		}
		if _, err := io.WriteString(w, line); err != nil {
			return err
		}
	}
	return nil
}
