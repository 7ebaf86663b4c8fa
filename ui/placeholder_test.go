//go:build !embedui

package ui

import "testing"

func TestDefaultBuildEmbedsPlaceholder(t *testing.T) {
	t.Parallel()
	if !IsPlaceholder() {
		t.Fatal("a build without -tags embedui must embed the placeholder page")
	}
}
