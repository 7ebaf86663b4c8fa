// Package logging builds the Hub's one zerolog.Logger: human-readable on a terminal, JSON
// otherwise, optionally also JSON into a rotated log file.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// Options configure New.
type Options struct {
	Level     string // trace|debug|info|warn|error; a Rust-style "info,tower_http=warn" uses its bare level
	File      string // empty: no file
	Rotation  string // never|hourly|daily
	KeepFiles int
	Out       io.Writer
	Console   bool             // human-readable output (Out is a terminal); JSON otherwise
	Now       func() time.Time // for rotation; time.Now when nil
}

// IsTerminal reports whether w is a terminal, where people rather than collectors read logs.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Formats accepted by --log-format; "auto" (or empty) picks by ConsoleFor's terminal rule.
const (
	FormatAuto    = "auto"
	FormatConsole = "console"
	FormatJSON    = "json"
)

// ConsoleFor decides between human-readable and JSON output: an explicit format wins; otherwise
// a terminal gets the console format and anything else (journald, a file, a collector) JSON.
func ConsoleFor(format string, isTerminal bool) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", FormatAuto:
		return isTerminal, nil
	case FormatConsole:
		return true, nil
	case FormatJSON:
		return false, nil
	}
	return false, fmt.Errorf("unknown log format %q (use auto, console or json)", format)
}

// New returns the logger and a Closer for the log file (a no-op without one).
func New(o Options) (zerolog.Logger, io.Closer, error) {
	level, err := ParseLevel(o.Level)
	if err != nil {
		return zerolog.Nop(), nopCloser{}, err
	}
	console := o.Out
	if o.Console {
		// Colour only for a terminal: escape codes turn journald's lines into "blob data" and
		// clutter a piped or redirected log.
		console = zerolog.ConsoleWriter{Out: o.Out, TimeFormat: time.RFC3339, NoColor: !IsTerminal(o.Out)}
	}
	var out io.Writer = console
	var closer io.Closer = nopCloser{}
	if o.File != "" {
		rf, err := NewRotatingFile(o.File, o.Rotation, o.KeepFiles, o.Now)
		if err != nil {
			return zerolog.Nop(), nopCloser{}, err
		}
		out = zerolog.MultiLevelWriter(console, rf)
		closer = rf
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), closer, nil
}

// ParseLevel accepts a level name, or a comma list of directives of which the first bare one is
// the level (module directives such as tower_http=warn have no meaning here and are ignored).
func ParseLevel(s string) (zerolog.Level, error) {
	if strings.TrimSpace(s) == "" {
		return zerolog.InfoLevel, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "" || strings.Contains(part, "=") {
			continue
		}
		switch part {
		case "trace":
			return zerolog.TraceLevel, nil
		case "debug":
			return zerolog.DebugLevel, nil
		case "info":
			return zerolog.InfoLevel, nil
		case "warn", "warning":
			return zerolog.WarnLevel, nil
		case "error":
			return zerolog.ErrorLevel, nil
		case "off":
			return zerolog.Disabled, nil
		}
		return zerolog.NoLevel, fmt.Errorf("unknown log level %q (use trace, debug, info, warn or error)", part)
	}
	return zerolog.InfoLevel, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
