package jobspec

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseVerification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     *Verification
		field    string
	}{
		{name: "Absent", in: ``},
		{name: "Null", in: `null`},
		{name: "Empty", in: `{}`},
		{name: "WeeklyDefaults", in: `{"schedule":"0 3 * * 0"}`,
			want: &Verification{Schedule: "0 3 * * 0", Timezone: "Europe/Paris", Mode: VerifyModeVerify}},
		{name: "RestoreTestSample", in: `{"schedule":"@daily","timezone":"Asia/Shanghai","mode":"restore_test","sample_files":20}`,
			want: &Verification{Schedule: "@daily", Timezone: "Asia/Shanghai", Mode: VerifyModeRestoreTest, SampleFiles: 20}},
		{name: "NoSchedule", in: `{"mode":"verify"}`, field: "verification.schedule"},
		{name: "BadCron", in: `{"schedule":"nope"}`, field: "verification.schedule"},
		{name: "NeverFires", in: `{"schedule":"0 0 31 4 *"}`, field: "verification.schedule"},
		{name: "BadZone", in: `{"schedule":"@daily","timezone":"Mars/Base"}`, field: "verification.timezone"},
		{name: "BadMode", in: `{"schedule":"@daily","mode":"pray"}`, field: "verification.mode"},
		{name: "SampleOnVerify", in: `{"schedule":"@daily","sample_files":3}`, field: "verification.sample_files"},
		{name: "NegativeSample", in: `{"schedule":"@daily","mode":"restore_test","sample_files":-1}`, field: "verification.sample_files"},
		{name: "UnknownField", in: `{"schedule":"@daily","when":"now"}`, field: "verification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseVerification(json.RawMessage(tc.in), "Europe/Paris")
			if tc.field != "" {
				var je *Error
				if !errors.As(err, &je) || je.Field != tc.field {
					t.Fatalf("err = %v, want a jobspec.Error on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
