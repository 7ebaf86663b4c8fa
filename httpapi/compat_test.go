package httpapi_test

import (
	"net/http"
	"testing"
)

// Issue 13: routes both we and the original serve answer as the original does.

func TestReadOnlyPOSTsNeedNoCSRF(t *testing.T) {
	t.Parallel()
	bh := startBackupHub(t)
	job := uuidN(1, 1)
	bh.insertJob(t, job, fsSpec)
	noCSRF := bh.Login(t)
	noCSRF.CSRF = ""
	if resp := noCSRF.Do(t, "POST", "/api/jobs/"+job+"/retention/preview", nil); resp.Status != http.StatusOK {
		t.Fatalf("retention preview without CSRF token: %s", resp)
	}
	// Mutations next to it still need the token.
	for _, path := range []string{"/api/jobs/" + job + "/retention/apply", "/api/nodes/hub/webdav/list"} {
		if resp := noCSRF.Do(t, "POST", path, map[string]any{}); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "invalid_csrf" {
			t.Errorf("POST %s without CSRF token: %s", path, resp)
		}
	}
	if resp := noCSRF.Do(t, "PUT", "/api/jobs/"+job+"/retention", map[string]any{"enabled": false}); resp.ErrorCode() != "invalid_csrf" {
		t.Errorf("PUT retention without CSRF token: %s", resp)
	}
	// Without a session, still 401 unauthorized.
	if resp := bh.Client(t).Do(t, "POST", "/api/jobs/"+job+"/retention/preview", nil); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "unauthorized" {
		t.Fatalf("anonymous preview: %s", resp)
	}
}

func TestTemplateValidateNeedsNoCSRF(t *testing.T) {
	t.Parallel()
	b := setupNotify(t)
	noCSRF := b.hub.Login(t)
	noCSRF.CSRF = ""
	if resp := noCSRF.Do(t, "POST", "/api/notifications/templates/validate", `{"templates":{}}`); resp.Status != http.StatusOK {
		t.Fatalf("template validation without CSRF token: %s", resp)
	}
	if resp := noCSRF.Do(t, "POST", "/api/notifications/destinations/smtp/x/test", nil); resp.ErrorCode() != "invalid_csrf" {
		t.Fatalf("destination test without CSRF token: %s", resp)
	}
}
