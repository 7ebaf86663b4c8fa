package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A page of the Hub-wide runs list must walk an index in order: a sort (temp B-tree) would read
// and sort every run for each page of 50.
func TestRunsListPagesWithoutSorting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cursorQ, cursorArgs := listRunsQuery(RunFilter{}, &RunCursor{StartedAt: 5, ID: "r"}, 50)
	for name, q := range map[string]struct {
		query string
		args  []any
	}{
		"first page":   {planRunsQ, planRunsArgs},
		"after cursor": {cursorQ, cursorArgs},
	} {
		plan := explain(t, db, q.query, q.args)
		for _, step := range plan {
			if strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("%s: plan %q sorts", name, plan)
			}
		}
	}
}
