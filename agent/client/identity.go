package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastion-backup/bastion/agent/protocol"
)

// Identity is <data>/agent.json: who this agent is to its Hub.
type Identity struct {
	V          int    `json:"v"`
	HubURL     string `json:"hub_url"`
	AgentID    string `json:"agent_id"`
	AgentKey   string `json:"agent_key"`
	Name       string `json:"name,omitempty"`
	EnrolledAt int64  `json:"enrolled_at"`
}

// IdentityFile is the name of the identity file in the data directory.
const IdentityFile = "agent.json"

// normalizeHubURL drops a trailing slash so "http://h/" and "http://h" name the same Hub.
func normalizeHubURL(u string) string { return strings.TrimRight(strings.TrimSpace(u), "/") }

func loadIdentity(dataDir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, IdentityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read agent identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("agent identity %s is not valid JSON: %w", filepath.Join(dataDir, IdentityFile), err)
	}
	if id.V != 1 || id.AgentID == "" || id.AgentKey == "" {
		return nil, fmt.Errorf("agent identity %s is incomplete (want v 1, agent_id, agent_key)", filepath.Join(dataDir, IdentityFile))
	}
	return &id, nil
}

func saveIdentity(dataDir string, id *Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encode agent identity: %w", err)
	}
	return writeFileAtomic(filepath.Join(dataDir, IdentityFile), append(b, '\n'))
}

// EnrollError is a refusal from the Hub's enrollment endpoint.
type EnrollError struct {
	Status int
	Code   string
	Reason string
}

func (e *EnrollError) Error() string {
	s := fmt.Sprintf("hub refused enrollment: %d %s", e.Status, e.Code)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// ensureIdentity loads agent.json, or enrolls with the token and writes it. It never retries an
// enrollment: a token is single-use or counted, and a failure needs an operator.
func ensureIdentity(ctx context.Context, o *Options) (*Identity, error) {
	id, err := loadIdentity(o.DataDir)
	if err != nil {
		return nil, err
	}
	hub := normalizeHubURL(o.HubURL)
	if id != nil {
		if normalizeHubURL(id.HubURL) != hub {
			return nil, fmt.Errorf("agent.json was enrolled with hub %q but --hub-url is %q; use the same URL, or a new --data-dir to enroll with another Hub",
				redactURL(id.HubURL), redactURL(o.HubURL))
		}
		return id, nil
	}
	if o.EnrollToken == "" {
		return nil, fmt.Errorf("no agent identity in %s and no enrollment token: pass --enroll-token (or BASTION_ENROLL_TOKEN) once to enroll", o.DataDir)
	}
	res, err := enroll(ctx, o.httpClient(), hub, o.EnrollToken, o.Name)
	if err != nil {
		return nil, err
	}
	id = &Identity{V: 1, HubURL: hub, AgentID: res.AgentID, AgentKey: res.AgentKey, Name: o.Name, EnrolledAt: o.Clock.Now().Unix()}
	if err := saveIdentity(o.DataDir, id); err != nil {
		return nil, fmt.Errorf("enrolled as agent %s but could not save its identity (enroll again with a new token): %w", res.AgentID, err)
	}
	return id, nil
}

type enrollResponse struct {
	AgentID  string `json:"agent_id"`
	AgentKey string `json:"agent_key"`
}

func enroll(ctx context.Context, hc *http.Client, hubURL, token, name string) (*enrollResponse, error) {
	u, err := protocol.HTTPURL(hubURL, "agent/enroll")
	if err != nil {
		return nil, err
	}
	body := map[string]any{"token": token}
	if name != "" {
		body["name"] = name
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = true // a one-off: keep no idle connection around
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("enroll with the hub: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp.StatusCode, data)
	}
	var out enrollResponse
	if err := json.Unmarshal(data, &out); err != nil || out.AgentID == "" || out.AgentKey == "" {
		return nil, fmt.Errorf("enroll: the hub's answer is not an enrollment")
	}
	return &out, nil
}

func apiError(status int, body []byte) *EnrollError {
	var env struct {
		Error   string `json:"error"`
		Details struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	_ = json.Unmarshal(body, &env)
	return &EnrollError{Status: status, Code: env.Error, Reason: env.Details.Reason}
}

// redactURL drops userinfo from a URL for messages and logs.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 && (strings.IndexByte(rest, '/') < 0 || at < strings.IndexByte(rest, '/')) {
			return s[:i+3] + "REDACTED@" + rest[at+1:]
		}
	}
	return s
}
