package names_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bastion-backup/bastion/engine/names"
)

func TestDisplay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want, reason string
	}{
		{"Plain", "nightly /srv", "nightly /srv", ""},
		{"Trimmed", "  nightly \t", "nightly", ""},
		{"Chinese", "每日备份", "每日备份", ""},
		{"EmojiWithJoiner", "team 👨\u200d👩\u200d👧", "team 👨\u200d👩\u200d👧", ""},
		{"ExactlyMaxRunes", strings.Repeat("备", names.MaxLen), strings.Repeat("备", names.MaxLen), ""},
		{"Empty", "", "", names.ReasonRequired},
		{"OnlySpaces", " \t\n ", "", names.ReasonRequired},
		{"OneRuneTooMany", strings.Repeat("a", names.MaxLen+1), "", names.ReasonTooLong},
		{"FiveThousandBytes", strings.Repeat("x", 5000), "", names.ReasonTooLong},
		{"NUL", "a\x00b", "", names.ReasonInvalidCharacters},
		{"CRLF", "a\r\nfake row", "", names.ReasonInvalidCharacters},
		{"Tab", "a\tb", "", names.ReasonInvalidCharacters},
		{"Escape", "a\x1b[31mred", "", names.ReasonInvalidCharacters},
		{"C1", "a\u0085b", "", names.ReasonInvalidCharacters},
		{"RightToLeftOverride", "invoice\u202Egpj.exe", "", names.ReasonInvalidCharacters},
		{"Isolate", "a\u2066b\u2069", "", names.ReasonInvalidCharacters},
		{"RightToLeftMark", "a\u200Fb", "", names.ReasonInvalidCharacters},
		{"ArabicLetterMark", "a\u061Cb", "", names.ReasonInvalidCharacters},
		{"LineSeparator", "a\u2028b", "", names.ReasonInvalidCharacters},
		{"InvalidUTF8", "a\xffb", "", names.ReasonInvalidCharacters},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := names.Display(tc.in)
			if tc.reason == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Display(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				return
			}
			var ne *names.Error
			if !errors.As(err, &ne) || ne.Reason != tc.reason {
				t.Fatalf("Display(%q) error = %v; want reason %s", tc.in, err, tc.reason)
			}
			if strings.Contains(ne.Message, tc.in) && tc.in != "" {
				t.Fatalf("message %q echoes the name", ne.Message)
			}
		})
	}
}
