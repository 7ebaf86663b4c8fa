package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Every page of the audit list, whatever its filters, must be answered through one of the
// audit_log indexes in order: neither a table scan nor a sort (TEMP B-TREE), which would read the
// whole log (months of rows) for each page of 50.
func TestAuditListUsesIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	uid, from, to := int64(1), int64(10), int64(20)
	cur := &AuditCursor{At: 15, ID: 7}
	cases := []struct {
		name    string
		f       AuditFilter
		after   *AuditCursor
		wantIdx string
	}{
		{"first page", AuditFilter{}, nil, "audit_log_at"},
		{"after cursor", AuditFilter{}, cur, "audit_log_at"},
		{"time range", AuditFilter{From: &from, To: &to}, cur, "audit_log_at"},
		{"user id", AuditFilter{UserID: &uid}, cur, "audit_log_user"},
		{"user id and time range", AuditFilter{UserID: &uid, From: &from, To: &to}, nil, "audit_log_user"},
		{"username", AuditFilter{Username: "admin"}, cur, "audit_log_username"},
		{"action", AuditFilter{Action: "PUT /api/jobs/{id}"}, cur, "audit_log_action"},
		{"action and time range", AuditFilter{Action: "PUT /api/jobs/{id}", From: &from}, nil, "audit_log_action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, args := listAuditQuery(tc.f, tc.after, 51)
			plan := explain(t, db, q, args)
			for _, step := range plan {
				if strings.Contains(step, "TEMP B-TREE") || (strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " USING ")) {
					t.Errorf("plan %q scans or sorts:\n%s", plan, q)
				}
			}
			if !strings.Contains(strings.Join(plan, " \n")+" ", "INDEX "+tc.wantIdx+" ") {
				t.Errorf("plan %q does not use %s", plan, tc.wantIdx)
			}
		})
	}
	t.Run("prune", func(t *testing.T) {
		plan := explain(t, db, qPruneAudit, []any{100, 500})
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, " USING ") {
				t.Errorf("prune plan %q scans the table", plan)
			}
		}
	})
}

func explain(t *testing.T, db *DB, query string, args []any) []string {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}
