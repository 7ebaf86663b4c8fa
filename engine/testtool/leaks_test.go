package testtool

import (
	"strings"
	"testing"
)

func parkedForLeakTest(release <-chan struct{}) { <-release }

func TestLeakedGoroutines(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		close(started)
		parkedForLeakTest(release)
	}()
	<-started
	if got := LeakedGoroutines("testtool.parkedForLeakTest"); !strings.Contains(got, "parkedForLeakTest") {
		t.Fatalf("parked goroutine not reported; got %q", got)
	}
	close(release)
	if got := LeakedGoroutines("testtool.parkedForLeakTest"); got != "" {
		t.Fatalf("released goroutine still reported:\n%s", got)
	}
}
