package jobspec

import "testing"

func TestParseRetention(t *testing.T) {
	t.Parallel()
	r, e := ParseRetention([]byte(`{"enabled":true,"keep_last":3}`))
	if e != nil || r.MaxDeletePerTick != 50 || r.MaxDeletePerDay != 200 || *r.KeepLast != 3 {
		t.Fatalf("defaults: %+v %v", r, e)
	}
	for in, field := range map[string]string{
		`{"enabled":true}`:              "enabled",
		`{"keep_days":-1}`:              "keep_days",
		`{"max_delete_per_tick":0}`:     "max_delete_per_tick",
		`{"enabled":true,"keep_lst":3}`: "",
		`[1]`:                           "",
		`{"keep_last":3}}`:              "",
		`{"keep_last":3} {}`:            "",
	} {
		if _, e := ParseRetention([]byte(in)); e == nil || e.Field != field {
			t.Errorf("%s: error %+v, want field %q", in, e, field)
		}
	}
}
