// Command bastion is the Hub (the default) and, with `bastion agent`, the agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bastion-backup/bastion/hub/internal/config"
	// Jobs name IANA zones; embedding the zone database (about 450 KB) keeps them working on a
	// host or container without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// Set at release build time with -ldflags "-X main.version=... -X main.buildTime=<unix>".
var (
	version   = "dev"
	buildTime = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts a graceful shutdown, the default handlers come back, so a
	// second Ctrl-C ends a shutdown that takes too long.
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // usage was printed; asking for help is not a failure
		}
		fmt.Fprintln(os.Stderr, "bastion:", err)
		os.Exit(1)
	}
}

// run dispatches a subcommand; no subcommand (or flags first) runs the Hub.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runIO(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runIO is run with an explicit standard input (keypack --password-stdin reads it).
func runIO(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "hub"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "hub":
		return withUsage(runHub(ctx, args, getenv, stderr), stdout)
	case "agent":
		return runAgent(ctx, args, getenv, stderr)
	case "config":
		return withUsage(runConfig(ctx, args, getenv, stdout), stdout)
	case "doctor":
		return runDoctor(ctx, args, getenv, stdout, stderr)
	case "keypack":
		return runKeypack(args, getenv, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "bastion", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage())
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage())
}

// withUsage prints the Hub's flags when err is a request for help (-h, --help).
func withUsage(err error, stdout io.Writer) error {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, config.Usage())
	}
	return err
}

func usage() string {
	return `Usage:
  bastion [hub] [flags]      run the Hub (see bastion hub --help)
  bastion agent --hub-url URL [--enroll-token T] [--name N] [--data-dir D] [--heartbeat-seconds 15]
                             run an agent that takes jobs from the Hub (see bastion agent --help)
  bastion config [--json]    print the effective configuration and where each value comes from
  bastion doctor [--data-dir D] [--json]
                             check a data directory and say how to fix what is wrong; exit 1 on a FAIL
  bastion keypack export --out FILE | import --in FILE [--force] | rotate
                             back up, restore or rotate master.key (see bastion keypack -h)
  bastion version            print the version
`
}
