package strictjson

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	type obj struct {
		A int `json:"a"`
	}
	for _, tc := range []struct {
		name, in string
		trailing bool
		fails    bool
	}{
		{name: "object", in: `{"a":1}`},
		{name: "white space around", in: " \n{\"a\":1}\t\n "},
		{name: "second object", in: `{"a":1}{"a":2}`, trailing: true},
		{name: "stray closing brace", in: `{"a":1}}`, trailing: true},
		{name: "stray closing bracket", in: `{"a":1}]`, trailing: true},
		{name: "trailing garbage", in: `{"a":1} x`, trailing: true},
		{name: "trailing number", in: `{"a":1} 2`, trailing: true},
		{name: "unknown field", in: `{"a":1,"b":2}`, fails: true},
		{name: "wrong type", in: `{"a":"x"}`, fails: true},
		{name: "truncated", in: `{"a":1`, fails: true},
		{name: "empty", in: ``, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v obj
			err := Decode([]byte(tc.in), &v)
			switch {
			case tc.trailing && !errors.Is(err, ErrTrailingData):
				t.Fatalf("Decode(%q) = %v, want ErrTrailingData", tc.in, err)
			case tc.fails && (err == nil || errors.Is(err, ErrTrailingData)):
				t.Fatalf("Decode(%q) = %v, want a decode error", tc.in, err)
			case !tc.trailing && !tc.fails && err != nil:
				t.Fatalf("Decode(%q) = %v", tc.in, err)
			case !tc.trailing && !tc.fails && v.A != 1:
				t.Fatalf("Decode(%q) gave %+v", tc.in, v)
			}
		})
	}
}

func TestDecodeUnknownFieldNamed(t *testing.T) {
	t.Parallel()
	var v struct{}
	err := Decode([]byte(`{"secret_thing":1}`), &v)
	if err == nil || !strings.HasPrefix(err.Error(), "json: unknown field ") {
		t.Fatalf("Decode = %v, want the decoder's unknown-field error", err)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	keys, err := Keys([]byte(` {"b":1,"a":{"x":[1,{"y":2}]},"c":null,"b":"again"}`))
	if err != nil || strings.Join(keys, ",") != "b,a,c,b" {
		t.Fatalf("Keys = %q, %v", keys, err)
	}
	if keys, err := Keys([]byte(`{}`)); err != nil || len(keys) != 0 {
		t.Fatalf("Keys({}) = %q, %v", keys, err)
	}
}
