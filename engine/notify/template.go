package notify

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/engine/notify/channel"
	"github.com/bastion-backup/bastion/storage"
)

// Values are what the placeholders of a template stand for, for one run.
type Values = channel.Values

// Placeholders lists every placeholder a template may use, in documentation order.
var Placeholders = []string{
	"{{title}}", "{{status}}", "{{status_text}}", "{{job_id}}", "{{job_name}}", "{{run_id}}",
	"{{started_at}}", "{{ended_at}}", "{{target_type}}", "{{target_location}}", "{{target}}",
	"{{error}}", "{{target_line_wecom}}", "{{error_line_wecom}}", "{{target_line_email}}",
	"{{error_line_email}}", "{{consistency_changed_total}}", "{{consistency_line_wecom}}",
	"{{consistency_line_email}}", "{{run_url}}", "{{operation_id}}", "{{operation_url}}",
}

func pairs(v Values) []string {
	return []string{
		"{{title}}", v.Title,
		"{{status}}", v.Status,
		"{{status_text}}", v.StatusText,
		"{{job_id}}", v.JobID,
		"{{job_name}}", v.JobName,
		"{{run_id}}", v.RunID,
		"{{started_at}}", v.StartedAt,
		"{{ended_at}}", v.EndedAt,
		"{{target_type}}", v.TargetType,
		"{{target_location}}", v.TargetLocation,
		"{{target}}", v.Target,
		"{{error}}", v.Error,
		"{{target_line_wecom}}", v.TargetLineWeCom,
		"{{error_line_wecom}}", v.ErrorLineWeCom,
		"{{target_line_email}}", v.TargetLineEmail,
		"{{error_line_email}}", v.ErrorLineEmail,
		"{{consistency_changed_total}}", strconv.FormatInt(v.ConsistencyChangedTotal, 10),
		"{{consistency_line_wecom}}", v.ConsistencyLineWeCom,
		"{{consistency_line_email}}", v.ConsistencyLineEmail,
		"{{run_url}}", v.RunURL,
		"{{operation_id}}", orDash(v.OperationID),
		"{{operation_url}}", orDash(v.OperationURL),
	}
}

// Render replaces every known placeholder in tmpl with its value: plain substring replacement,
// no escaping, no conditionals. It is one pass, so a value that happens to contain "{{error}}"
// (a job named so) is not itself replaced. Unknown placeholders stay as written.
func Render(tmpl string, v Values) string {
	return strings.NewReplacer(pairs(v)...).Replace(tmpl)
}

var placeholderRE = regexp.MustCompile(`\{\{[^{}]*\}\}`)

// UnknownPlaceholder is a {{...}} in a template that Render leaves as it is.
type UnknownPlaceholder struct {
	Template    string `json:"template"` // a template key, e.g. email_subject or verify_failed.email_body
	Placeholder string `json:"placeholder"`
}

// UnknownPlaceholders reports the {{...}} sequences of the templates that are not placeholders
// (a typo such as {{job}} or {{ job_name }}), each once per template, in order of appearance.
// They are kept literally when rendering; saving is not refused because of them.
func UnknownPlaceholders(t Templates) []UnknownPlaceholder {
	known := map[string]bool{}
	for _, p := range Placeholders {
		known[p] = true
	}
	var out []UnknownPlaceholder
	tpls := builtin.Templates()
	for _, drill := range []bool{false, true} {
		for _, tpl := range tpls {
			name, text := tpl.Key, t.Run[tpl.Key]
			if drill {
				name, text = "verify_failed."+tpl.Key, t.VerifyFailed[tpl.Key]
			}
			seen := map[string]bool{}
			for _, m := range placeholderRE.FindAllString(text, -1) {
				if !known[m] && !seen[m] {
					seen[m] = true
					out = append(out, UnknownPlaceholder{Template: name, Placeholder: m})
				}
			}
		}
	}
	return out
}

// renderAll renders every template of tpls with v, by key.
func renderAll(tpls map[string]string, v Values) map[string]string {
	r := strings.NewReplacer(pairs(v)...)
	out := make(map[string]string, len(tpls))
	for k, t := range tpls {
		out[k] = r.Replace(t)
	}
	return out
}

// Status titles and texts. A rejected run is one refused by the job's overlap policy.
func statusWords(status string) (title, text string) {
	switch status {
	case storage.RunSuccess:
		return "Bastion backup succeeded", "Succeeded"
	case storage.RunFailed:
		return "Bastion backup failed", "Failed"
	case storage.RunRejected:
		return "Bastion backup rejected", "Rejected"
	case storage.RunCanceled:
		return "Bastion backup canceled", "Canceled"
	}
	return "Bastion backup completed (" + status + ")", status
}

// errorExplanations add a sentence to the error lines for error codes that are not
// self-explanatory; {{error}} itself stays the bare code.
var errorExplanations = map[string]string{
	"overlap_rejected":   "another run of this job was still queued or running",
	"source_consistency": "the source changed while it was being backed up",
}

func formatTS(ts int64) string {
	return time.Unix(ts, 0).UTC().Format(time.RFC3339)
}

// runSummary is the part of a run summary that notifications read.
type runSummary struct {
	Target *struct {
		Type   string `json:"type"`
		RunURL string `json:"run_url"`
		RunDir string `json:"run_dir"`
	} `json:"target"`
	Filesystem  *struct{ Consistency *consistencyReport } `json:"filesystem"`
	Vaultwarden *struct{ Consistency *consistencyReport } `json:"vaultwarden"`
}

type consistencyReport struct {
	ChangedTotal   int64 `json:"changed_total"`
	ReplacedTotal  int64 `json:"replaced_total"`
	DeletedTotal   int64 `json:"deleted_total"`
	ReadErrorTotal int64 `json:"read_error_total"`
}

func (c *consistencyReport) total() int64 {
	if c == nil {
		return 0
	}
	return c.ChangedTotal + c.ReplacedTotal + c.DeletedTotal + c.ReadErrorTotal
}

// BuildValues computes the placeholder values of a run. publicBaseURL (no trailing slash, may be
// empty) makes {{run_url}}; without it {{run_url}} is "-".
func BuildValues(r storage.NotificationRun, publicBaseURL string) Values {
	v := Values{
		Status: r.Status, JobID: r.JobID, JobName: r.JobName, RunID: r.ID,
		StartedAt: formatTS(r.StartedAt), EndedAt: "-",
		TargetType: "-", TargetLocation: "-", Target: "-", RunURL: "-",
	}
	v.Title, v.StatusText = statusWords(r.Status)
	if v.JobName == "" {
		v.JobName = r.JobID
	}
	if r.EndedAt != nil {
		v.EndedAt = formatTS(*r.EndedAt)
	}
	if base := strings.TrimRight(publicBaseURL, "/"); base != "" {
		v.RunURL = base + "/runs/" + r.ID
	}
	if r.Error != nil {
		v.Error = strings.TrimSpace(*r.Error)
	}

	var sum runSummary
	if r.SummaryJSON != nil && json.Unmarshal([]byte(*r.SummaryJSON), &sum) == nil {
		if t := sum.Target; t != nil {
			if t.Type != "" {
				v.TargetType = t.Type
			}
			if t.RunURL != "" {
				v.TargetLocation = t.RunURL
			} else if t.RunDir != "" {
				v.TargetLocation = t.RunDir
			}
		}
		if sum.Filesystem != nil {
			v.ConsistencyChangedTotal += sum.Filesystem.Consistency.total()
		}
		if sum.Vaultwarden != nil {
			v.ConsistencyChangedTotal += sum.Vaultwarden.Consistency.total()
		}
	}
	switch {
	case v.TargetType != "-" && v.TargetLocation != "-":
		v.Target = v.TargetType + " " + v.TargetLocation
	case v.TargetType != "-":
		v.Target = v.TargetType
	case v.TargetLocation != "-":
		v.Target = v.TargetLocation
	}

	setLines(&v)
	if n := v.ConsistencyChangedTotal; n > 0 {
		line := "Source changed during backup: " + strconv.FormatInt(n, 10)
		if r.Status == storage.RunFailed && v.Error == "source_consistency" {
			line = "Failed by policy: source changed during backup: " + strconv.FormatInt(n, 10)
		}
		v.ConsistencyLineEmail = line + "\n"
		v.ConsistencyLineWeCom = "> " + v.ConsistencyLineEmail
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// BuildDrillValues computes the placeholder values of a failed drill (operation op) of run r's
// snapshot: the run's values, with the drill's title, status, times and error.
func BuildDrillValues(r storage.NotificationRun, op storage.Operation, publicBaseURL string) Values {
	v := BuildValues(r, publicBaseURL)
	v.Title, v.Status, v.StatusText = "Bastion restore drill failed", op.Status, "Drill failed"
	v.StartedAt, v.EndedAt, v.Error = formatTS(op.StartedAt), "-", ""
	if op.EndedAt != nil {
		v.EndedAt = formatTS(*op.EndedAt)
	}
	if op.Error != nil {
		v.Error = strings.TrimSpace(*op.Error)
	}
	v.OperationID = op.ID
	if base := strings.TrimRight(publicBaseURL, "/"); base != "" {
		v.OperationURL = base + "/operations/" + op.ID
	}
	v.ConsistencyChangedTotal, v.ConsistencyLineEmail, v.ConsistencyLineWeCom = 0, "", ""
	v.ErrorLineEmail, v.ErrorLineWeCom = "", ""
	setLines(&v)
	return v
}

// setLines fills the target and error lines from Target and Error.
func setLines(v *Values) {
	if v.Target != "-" {
		v.TargetLineEmail = "Target: " + v.Target + "\n"
		v.TargetLineWeCom = "> " + v.TargetLineEmail
	}
	if v.Error != "" {
		line := "Error: " + v.Error
		if why, ok := errorExplanations[v.Error]; ok {
			line += " (" + why + ")"
		}
		v.ErrorLineEmail = line + "\n"
		v.ErrorLineWeCom = "> " + v.ErrorLineEmail
	}
}
