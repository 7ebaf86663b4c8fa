// Package names is the one rule for display names: the names people give jobs and agents, which
// the web UI and the API show back to every user. A name is shown in lists next to other names,
// so it must look like what it is: no line breaks that forge extra rows, no bidirectional
// overrides that reverse what follows them ("gpj.exe" shown as "exe.jpg"), no NUL that cuts it
// short in a log, and no megabyte that every list of agents carries forever.
//
// Secret names (and so notification destinations) are identifiers with their own, stricter rule
// in engine/secrets; labels are [a-z0-9_-] identifiers. Neither comes through here.
package names

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest display name, in characters (Unicode code points), after trimming.
const MaxLen = 200

// Reasons an Error gives; the API sends them as details.reason of 400 invalid_name.
const (
	ReasonRequired          = "required"
	ReasonTooLong           = "too_long"
	ReasonInvalidCharacters = "invalid_characters"
)

// Error says why a name was refused.
type Error struct {
	Reason  string // ReasonRequired, ReasonTooLong or ReasonInvalidCharacters
	Message string // for people: what is wrong, never the name itself
}

func (e *Error) Error() string { return e.Message }

// Display checks a display name and returns it trimmed of surrounding white space. A name is
// valid when, trimmed, it is 1 to MaxLen characters of valid UTF-8 with none of:
//   - control characters (Unicode category Cc: NUL, CR, LF, TAB, ESC, DEL, C1 controls);
//   - line and paragraph separators (U+2028, U+2029), which break a line like LF does;
//   - bidirectional formatting characters (the Unicode Bidi_Control property: U+061C, U+200E,
//     U+200F, U+202A–U+202E, U+2066–U+2069), which reorder how the rest of a line is shown.
//
// Other invisible format characters (category Cf) are allowed on purpose: the zero-width joiner
// builds emoji sequences and the soft hyphen is harmless.
//
// Display never repairs a name (it does not strip what it refuses): a name is either stored as
// given, trimmed, or refused with a reason.
func Display(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" {
		return "", &Error{Reason: ReasonRequired, Message: "name is required"}
	}
	if !utf8.ValidString(n) {
		return "", &Error{Reason: ReasonInvalidCharacters, Message: "name is not valid UTF-8"}
	}
	// Counting stops early: a megabyte-long name costs no more than MaxLen+1 steps here.
	count := 0
	for _, r := range n {
		count++
		if count > MaxLen {
			return "", &Error{Reason: ReasonTooLong, Message: fmt.Sprintf("name is longer than %d characters", MaxLen)}
		}
		if Forbidden(r) {
			return "", &Error{Reason: ReasonInvalidCharacters,
				Message: fmt.Sprintf("name must not contain control or bidirectional formatting characters (found U+%04X)", r)}
		}
	}
	return n, nil
}

// Forbidden reports whether r may not appear in a display name.
func Forbidden(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}
