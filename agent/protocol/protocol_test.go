package protocol

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestEncodeCarriesTypeAndVersion(t *testing.T) {
	t.Parallel()
	for _, m := range []Message{&Ping{}, &Ack{TaskID: "t1"}, &TaskResult{TaskID: "t", RunID: "t", Status: StatusSuccess}} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Type string `json:"type"`
			V    int    `json:"v"`
		}
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if h.Type != m.MessageType() || h.V != 1 {
			t.Errorf("%s: type %q v %d", b, h.Type, h.V)
		}
	}
}

func TestOptionalFieldsGoOutAsNull(t *testing.T) {
	t.Parallel()
	b, err := Encode(&TaskResult{TaskID: "t", RunID: "t", Status: StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"summary":null`, `"error":null`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Task{TaskID: "r1", Task: BackupTask{RunID: "r1", JobID: "j1", StartedAt: 7, Spec: json.RawMessage(`{"type":"filesystem"}`)}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := m.(*Task)
	if !ok || out.TaskID != "r1" || out.Task.JobID != "j1" || string(out.Task.Spec) != `{"type":"filesystem"}` {
		t.Fatalf("round trip: %#v", m)
	}
}

func TestDecodeTolerates(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"NullFields":     `{"type":"task_result","v":1,"task_id":"a","run_id":"a","status":"failed","summary":null,"error":null}`,
		"MissingFields":  `{"type":"task_result","v":1,"task_id":"a"}`,
		"UnknownFields":  `{"type":"task_result","v":1,"task_id":"a","later_field":{"x":[1,2]},"status":"success"}`,
		"NullEverything": `{"type":"hello","v":1,"agent_id":null,"name":null,"info":null,"capabilities":null}`,
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := Decode([]byte(frame)); err != nil {
				t.Fatalf("decode %s: %v", frame, err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		frame string
		want  error
	}{
		"UnknownType":    {`{"type":"teleport","v":1}`, ErrUnknownType},
		"Version2":       {`{"type":"ping","v":2}`, ErrVersion},
		"NoVersion":      {`{"type":"ping"}`, ErrVersion},
		"BadJSON":        {`{"type":"ping",`, nil},
		"NotObject":      {`[1,2]`, nil},
		"WrongFieldType": {`{"type":"ack","v":1,"task_id":5}`, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode([]byte(c.frame))
			if err == nil {
				t.Fatalf("decode %s: got %#v, want an error", c.frame, m)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("decode %s: %v, want %v", c.frame, err, c.want)
			}
		})
	}
}

func TestEveryTypeDecodes(t *testing.T) {
	t.Parallel()
	for typ, newMsg := range registry {
		m := newMsg()
		if m.MessageType() != typ {
			t.Errorf("registry %q builds %q", typ, m.MessageType())
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(b)
		if err != nil || back.MessageType() != typ {
			t.Errorf("%s: %v %v", typ, back, err)
		}
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	tok := NewToken()
	h1, ok := HashToken(tok)
	if !ok || len(h1) != 32 {
		t.Fatalf("hash of a fresh token: %v %d", ok, len(h1))
	}
	if tok2 := NewToken(); tok2 == tok {
		t.Fatal("two tokens are equal")
	}
	for _, bad := range []string{"", "abc", tok + "A", strings.Repeat("!", 43), tok + "="} {
		if _, ok := HashToken(bad); ok {
			t.Errorf("HashToken(%q) accepted", bad)
		}
	}
}

func TestWebSocketURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"http://h:9876":  "ws://h:9876/agent/ws",
		"http://h:9876/": "ws://h:9876/agent/ws",
		"https://h/x":    "wss://h/x/agent/ws",
		"https://h/x/":   "wss://h/x/agent/ws",
	}
	for in, want := range cases {
		got, err := WebSocketURL(in)
		if err != nil || got != want {
			t.Errorf("WebSocketURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://h", "h:9876", "http://"} {
		if got, err := WebSocketURL(bad); err == nil {
			t.Errorf("WebSocketURL(%q) = %q, want an error", bad, got)
		}
	}
}

// TestGoExtensionsRoundTrip: the Go extensions survive encoding, and are absent (not null) when
// unset, so that an original peer sees the message it knows.
func TestGoExtensionsRoundTrip(t *testing.T) {
	t.Parallel()
	seq := int64(4)
	rcpt := "age1example"
	msgs := []Message{
		&RestoreTask{TaskID: "op", Task: RestoreRequest{OpID: "op", RunID: "r", JobID: "j", ConflictPolicy: "overwrite",
			Snapshot: snapLocal()}},
		&OperationEventMsg{Event: OperationEvent{OpID: "op", Level: "info", Kind: "manifest", Message: "m", Seq: &seq}},
		&Task{TaskID: "r", Task: BackupTask{RunID: "r", Spec: json.RawMessage(`{}`), AgeRecipient: &rcpt}},
		&SnapshotCleanupTask{Task: SnapshotDelete{RunID: "r", JobID: "j", BaseDir: "/bk"}},
		&SnapshotCleanupResult{RunID: "r", Status: CleanupSkipComplete},
		&EntriesList{RequestID: "q", RunID: "r", JobID: "j", Snapshot: snapLocal(),
			Prefix: "srv/app", Cursor: "200", Limit: 50, Q: "log", Kind: "file", HideDotfiles: true, FilesFirst: true, MinSize: &seq},
		&EntriesListResult{RequestID: "q", Prefix: "srv", Entries: []EntryChild{{Name: "a", Path: "srv/a", Kind: "file", Size: 3}},
			NextCursor: &rcpt, Total: 9},
		&VerifyTask{TaskID: "op", Task: VerifyRequest{OpID: "op", RunID: "r", JobID: "j",
			Snapshot: snapLocal(), SQLiteSnapshot: "db.sqlite3"}},
	}
	for _, in := range msgs {
		b, err := Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		again, _ := Encode(out)
		if string(again) != string(b) {
			t.Errorf("round trip changed %s into %s", b, again)
		}
	}
	b, _ := Encode(&RestoreTask{TaskID: "op", Task: RestoreRequest{OpID: "op"}})
	for _, absent := range []string{"snapshot", "job_id"} {
		if strings.Contains(string(b), `"`+absent+`"`) {
			t.Errorf("unset extension %q sent: %s", absent, b)
		}
	}
}

func TestNewUUIDIsAVersion4UUID(t *testing.T) {
	t.Parallel()
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewUUID()
		if !v4.MatchString(id) || seen[id] {
			t.Fatalf("NewUUID() = %q: want distinct lower-case UUIDv4 strings", id)
		}
		seen[id] = true
	}
}

func snapLocal() *SnapshotTarget {
	s := SnapshotTarget(`{"type":"local_dir","base_dir":"/bk"}`)
	return &s
}
