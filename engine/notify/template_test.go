package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bastion-backup/bastion/storage"
)

func ptr[T any](v T) *T { return &v }

func nrun(status string, mutate ...func(*storage.NotificationRun)) storage.NotificationRun {
	r := storage.NotificationRun{JobName: "Nightly"}
	r.ID, r.JobID, r.Status, r.StartedAt = "run-1", "job-1", status, t0.Unix()
	r.EndedAt = ptr(t0.Add(90 * time.Second).Unix())
	for _, m := range mutate {
		m(&r)
	}
	return r
}

func withSummary(s string) func(*storage.NotificationRun) {
	return func(r *storage.NotificationRun) { r.SummaryJSON = &s }
}

func withError(e string) func(*storage.NotificationRun) {
	return func(r *storage.NotificationRun) { r.Error = &e }
}

const webdavSummary = `{"target":{"type":"webdav","run_url":"https://dav.example/b/job-1/run-1/"},
	"filesystem":{"consistency":{"changed_total":2,"replaced_total":1,"deleted_total":1,"read_error_total":1}},
	"vaultwarden":{"consistency":{"changed_total":10,"replaced_total":0,"deleted_total":0,"read_error_total":0}}}`

// TestPlaceholders renders each placeholder alone, so that every one is pinned by a case.
func TestPlaceholders(t *testing.T) {
	t.Parallel()
	success := nrun(storage.RunSuccess, withSummary(webdavSummary))
	failedPolicy := nrun(storage.RunFailed, withError(" source_consistency\n"),
		withSummary(`{"target":{"type":"local_dir","run_dir":"/backups/job-1/run-1"},"filesystem":{"consistency":{"changed_total":3}}}`))
	rejected := nrun(storage.RunRejected, withError("overlap_rejected"), func(r *storage.NotificationRun) { r.JobName = "" })
	running := nrun("weird", func(r *storage.NotificationRun) { r.EndedAt = nil })
	for _, tc := range []struct {
		name, tmpl string
		run        storage.NotificationRun
		baseURL    string
		want       string
	}{
		{"TitleSuccess", "{{title}}", success, "", "Bastion backup succeeded"},
		{"TitleFailed", "{{title}}", failedPolicy, "", "Bastion backup failed"},
		{"TitleRejected", "{{title}}", rejected, "", "Bastion backup rejected"},
		{"TitleCanceled", "{{title}}", nrun(storage.RunCanceled), "", "Bastion backup canceled"},
		{"TitleOther", "{{title}}", running, "", "Bastion backup completed (weird)"},
		{"Status", "{{status}}", rejected, "", "rejected"},
		{"StatusTextSuccess", "{{status_text}}", success, "", "Succeeded"},
		{"StatusTextFailed", "{{status_text}}", failedPolicy, "", "Failed"},
		{"StatusTextRejected", "{{status_text}}", rejected, "", "Rejected"},
		{"StatusTextOther", "{{status_text}}", running, "", "weird"},
		{"JobID", "{{job_id}}", success, "", "job-1"},
		{"JobName", "{{job_name}}", success, "", "Nightly"},
		{"JobNameFallsBackToID", "{{job_name}}", rejected, "", "job-1"},
		{"RunID", "{{run_id}}", success, "", "run-1"},
		{"StartedAt", "{{started_at}}", success, "", "2025-03-01T12:00:00Z"},
		{"EndedAt", "{{ended_at}}", success, "", "2025-03-01T12:01:30Z"},
		{"EndedAtMissing", "{{ended_at}}", running, "", "-"},
		{"TargetType", "{{target_type}}", success, "", "webdav"},
		{"TargetTypeUnknown", "{{target_type}}", rejected, "", "-"},
		{"TargetLocationURL", "{{target_location}}", success, "", "https://dav.example/b/job-1/run-1/"},
		{"TargetLocationDir", "{{target_location}}", failedPolicy, "", "/backups/job-1/run-1"},
		{"TargetLocationUnknown", "{{target_location}}", rejected, "", "-"},
		{"Target", "{{target}}", success, "", "webdav https://dav.example/b/job-1/run-1/"},
		{"TargetTypeOnly", "{{target}}", nrun(storage.RunSuccess, withSummary(`{"target":{"type":"webdav"}}`)), "", "webdav"},
		{"TargetUnknown", "{{target}}", rejected, "", "-"},
		{"Error", "[{{error}}]", failedPolicy, "", "[source_consistency]"},
		{"ErrorNone", "[{{error}}]", success, "", "[]"},
		{"TargetLineWeCom", "{{target_line_wecom}}", success, "", "> Target: webdav https://dav.example/b/job-1/run-1/\n"},
		{"TargetLineWeComNone", "[{{target_line_wecom}}]", rejected, "", "[]"},
		{"TargetLineEmail", "{{target_line_email}}", failedPolicy, "", "Target: local_dir /backups/job-1/run-1\n"},
		{"TargetLineEmailNone", "[{{target_line_email}}]", rejected, "", "[]"},
		{"ErrorLineWeCom", "{{error_line_wecom}}", failedPolicy, "",
			"> Error: source_consistency (the source changed while it was being backed up)\n"},
		{"ErrorLineWeComRejected", "{{error_line_wecom}}", rejected, "",
			"> Error: overlap_rejected (another run of this job was still queued or running)\n"},
		{"ErrorLineWeComPlain", "{{error_line_wecom}}", nrun(storage.RunFailed, withError("run_failed")), "", "> Error: run_failed\n"},
		{"ErrorLineWeComNone", "[{{error_line_wecom}}]", success, "", "[]"},
		{"ErrorLineEmail", "{{error_line_email}}", nrun(storage.RunFailed, withError("run_failed")), "", "Error: run_failed\n"},
		{"ErrorLineEmailNone", "[{{error_line_email}}]", success, "", "[]"},
		{"ConsistencyTotal", "{{consistency_changed_total}}", success, "", "15"},
		{"ConsistencyTotalNone", "{{consistency_changed_total}}", rejected, "", "0"},
		{"ConsistencyLineWeCom", "{{consistency_line_wecom}}", success, "", "> Source changed during backup: 15\n"},
		{"ConsistencyLineWeComPolicy", "{{consistency_line_wecom}}", failedPolicy, "", "> Failed by policy: source changed during backup: 3\n"},
		{"ConsistencyLineWeComNone", "[{{consistency_line_wecom}}]", rejected, "", "[]"},
		{"ConsistencyLineEmail", "{{consistency_line_email}}", success, "", "Source changed during backup: 15\n"},
		{"ConsistencyLineEmailPolicy", "{{consistency_line_email}}", failedPolicy, "", "Failed by policy: source changed during backup: 3\n"},
		{"ConsistencyLineEmailNone", "[{{consistency_line_email}}]", rejected, "", "[]"},
		{"RunURL", "{{run_url}}", success, "https://backup.example.test/", "https://backup.example.test/runs/run-1"},
		{"RunURLWithoutBase", "{{run_url}}", success, "", "-"},
		{"UnknownKeptLiterally", "{{job}} {{ job_name }} {{job_name}}", success, "", "{{job}} {{ job_name }} Nightly"},
		{"OnePass", "{{job_name}}", nrun(storage.RunSuccess, func(r *storage.NotificationRun) { r.JobName = "{{error}}" }), "", "{{error}}"},
		{"BrokenSummaryIgnored", "{{target}}", nrun(storage.RunSuccess, withSummary(`{not json`)), "", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Render(tc.tmpl, BuildValues(tc.run, tc.baseURL)); got != tc.want {
				t.Errorf("Render(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

// TestEveryPlaceholderIsReplaced guards the list against a placeholder that renders as itself.
func TestEveryPlaceholderIsReplaced(t *testing.T) {
	t.Parallel()
	v := BuildValues(nrun(storage.RunSuccess, withSummary(webdavSummary)), "https://b.example")
	for _, p := range Placeholders {
		if got := Render(p, v); got == p || strings.Contains(got, "{{") {
			t.Errorf("%s renders as %q", p, got)
		}
	}
	if len(UnknownPlaceholders(Templates{Run: map[string]string{"wecom_markdown": strings.Join(Placeholders, "")}})) != 0 {
		t.Error("a listed placeholder is reported unknown")
	}
}

func TestDefaultTemplates(t *testing.T) {
	t.Parallel()
	d := DefaultSettings().Templates
	v := BuildValues(nrun(storage.RunFailed, withError("source_consistency"),
		withSummary(`{"target":{"type":"webdav","run_url":"https://dav/x/"},"filesystem":{"consistency":{"changed_total":4}}}`)), "")
	if got, want := Render(d.Run["wecom_markdown"], v), "**Bastion backup failed**\n> Job: Nightly\n> Run: run-1\n"+
		"> Started: 2025-03-01T12:00:00Z\n> Ended: 2025-03-01T12:01:30Z\n> Target: webdav https://dav/x/\n"+
		"> Failed by policy: source changed during backup: 4\n"+
		"> Error: source_consistency (the source changed while it was being backed up)\n"; got != want {
		t.Errorf("wecom =\n%s\nwant\n%s", got, want)
	}
	if got := Render(d.Run["email_subject"], v); got != "Bastion Failed - Nightly" {
		t.Errorf("subject = %q", got)
	}
	if got, want := Render(d.Run["email_body"], v), "Bastion backup\n\nJob: Nightly\nRun: run-1\nStatus: failed\n"+
		"Started: 2025-03-01T12:00:00Z\nEnded: 2025-03-01T12:01:30Z\nTarget: webdav https://dav/x/\n"+
		"Failed by policy: source changed during backup: 4\n"+
		"Error: source_consistency (the source changed while it was being backed up)\n"; got != want {
		t.Errorf("body =\n%s\nwant\n%s", got, want)
	}
	if u := UnknownPlaceholders(d); len(u) != 0 {
		t.Errorf("defaults use unknown placeholders %v", u)
	}
}

func TestUnknownPlaceholders(t *testing.T) {
	t.Parallel()
	got := UnknownPlaceholders(Templates{Run: map[string]string{
		"wecom_markdown": "{{title}} {{job}} {{job}} {{ title }}",
		"email_subject":  "{{status_text}}",
		"email_body":     "{{job}} {{}} {{run_url}}",
	}})
	want := `[{wecom_markdown {{job}}} {wecom_markdown {{ title }}} {email_body {{job}}} {email_body {{}}}]`
	if fmt.Sprint(got) != want {
		t.Fatalf("unknown = %v, want %s", got, want)
	}
}

func TestSettingsDecodeAndValidate(t *testing.T) {
	t.Parallel()
	// A document written before the webhook channel existed keeps it on.
	old := `{"enabled":true,"channels":{"wecom_bot":{"enabled":false},"email":{"enabled":true}},
		"templates":{"wecom_markdown":"w","email_subject":"s","email_body":"b"}}`
	s, err := DecodeSettings(DefaultSettings(), []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if s.ChannelEnabled(ChannelWeComBot) || !s.ChannelEnabled(ChannelEmail) || !s.ChannelEnabled(ChannelWebhook) || s.Templates.Run["email_body"] != "b" {
		t.Fatalf("decoded %+v", s)
	}
	b, _ := json.Marshal(DefaultSettings())
	if !strings.Contains(string(b), `"channels":{"wecom_bot":{"enabled":true},"email":{"enabled":true},"webhook":{"enabled":true}`) {
		t.Fatalf("settings JSON = %s", b)
	}
	for field, mutate := range map[string]func(*Settings){
		"templates.wecom_markdown": func(s *Settings) { s.Templates.Run["wecom_markdown"] = " \n" },
		"templates.email_subject":  func(s *Settings) { s.Templates.Run["email_subject"] = "" },
		"templates.email_body":     func(s *Settings) { s.Templates.Run["email_body"] = "\t" },
	} {
		s := DefaultSettings()
		mutate(&s)
		err := ValidateSettings(s)
		e, ok := err.(*Error)
		if !ok || e.Field != field || e.Code != "invalid_template" || e.Kind != KindInvalid {
			t.Errorf("blank %s: err = %v", field, err)
		}
	}
	if err := ValidateSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
}

func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	var got []string
	var total time.Duration
	for a := 1; a < MaxAttempts; a++ {
		got = append(got, fmt.Sprint(Backoff(a).Seconds()))
		total += Backoff(a)
	}
	if s := strings.Join(got, " "); s != "30 60 120 240 480 960 1920 3600 3600" {
		t.Fatalf("backoff = %s", s)
	}
	if total != 3*time.Hour+3*time.Minute+30*time.Second {
		t.Fatalf("total wait = %s", total)
	}
	if RetryDelay(1, 10*time.Minute) != 10*time.Minute || RetryDelay(8, 10*time.Minute) != time.Hour ||
		RetryDelay(1, 0) != 30*time.Second || RetryDelay(1, 48*time.Hour) != MaxRetryAfter {
		t.Fatal("RetryDelay does not take the larger of backoff and a capped Retry-After")
	}
}
