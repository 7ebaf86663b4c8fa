package s3

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bastion-backup/bastion/engine/internal/strictjson"
)

// Type is the target type of S3, as returned by Target.Type and stored in Redacted.Type.
const Type = "s3"

// SecretKind is the kind of secret that holds S3 credentials (Credentials).
const SecretKind = "s3"

// Part size bounds. S3 refuses multipart parts under 5 MiB (except the last) and over 5 GiB.
const (
	DefaultPartSizeBytes int64 = 64 << 20
	MinPartSizeBytes     int64 = 5 << 20
	MaxPartSizeBytes     int64 = 5 << 30
	// maxParts is S3's limit on the parts of one multipart upload.
	maxParts = 10000
	// MaxPrefixLen bounds the prefix, leaving room for ids and names inside S3's 1024-byte keys.
	MaxPrefixLen = 512
)

// Config is a job's S3 target:
//
//	{"type":"s3","endpoint":"https://…","region":"…","bucket":"…","prefix":"…",
//	 "secret_name":"…","part_size_bytes":…,"path_style":true|false}
//
// It holds no credentials: those come from the secret of kind "s3" named SecretName.
type Config struct {
	Endpoint      string `json:"endpoint"`
	Region        string `json:"region,omitempty"`
	Bucket        string `json:"bucket"`
	Prefix        string `json:"prefix,omitempty"`
	SecretName    string `json:"secret_name"`
	PartSizeBytes int64  `json:"part_size_bytes,omitempty"`
	PathStyle     bool   `json:"path_style,omitempty"`
}

// configJSON adds the type discriminator, which Config itself does not keep.
type configJSON struct {
	Type string `json:"type"`
	Config
}

// MarshalJSON writes the config with "type":"s3".
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config // without this method
	return json.Marshal(struct {
		Type string `json:"type"`
		plain
	}{Type, plain(c)})
}

// ParseConfig decodes a job's target JSON, normalizes it (see Normalized) and validates it.
// Unknown fields are refused so that a misspelt option is not silently ignored.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var cj configJSON
	if err := strictjson.Decode(raw, &cj); errors.Is(err, strictjson.ErrTrailingData) {
		return Config{}, errors.New("s3 target: trailing data after the JSON object")
	} else if err != nil {
		return Config{}, fmt.Errorf("s3 target: %w", err)
	}
	if cj.Type != Type {
		return Config{}, fmt.Errorf("s3 target: type must be %q", Type)
	}
	c := cj.Config.Normalized()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Normalized trims spaces, drops a trailing "/" from the endpoint, strips the prefix's leading
// and trailing "/" and fills in the default part size. It does not validate.
func (c Config) Normalized() Config {
	c.Endpoint = strings.TrimRight(strings.TrimSpace(c.Endpoint), "/")
	c.Region = strings.TrimSpace(c.Region)
	c.Bucket = strings.TrimSpace(c.Bucket)
	c.Prefix = strings.Trim(c.Prefix, "/")
	c.SecretName = strings.TrimSpace(c.SecretName)
	if c.PartSizeBytes == 0 {
		c.PartSizeBytes = DefaultPartSizeBytes
	}
	return c
}

// Validate checks a normalized config. Errors name the field and never repeat the endpoint,
// which a careless user may have given with a key in it.
func (c Config) Validate() error {
	if _, _, err := parseEndpoint(c.Endpoint); err != nil {
		return err
	}
	if err := validateRegion(c.Region); err != nil {
		return err
	}
	if err := ValidateBucket(c.Bucket); err != nil {
		return err
	}
	if err := validatePrefix(c.Prefix); err != nil {
		return err
	}
	if c.SecretName == "" {
		return errors.New("secret_name: required (the name of an S3 secret holding the access key)")
	}
	if c.PartSizeBytes < MinPartSizeBytes || c.PartSizeBytes > MaxPartSizeBytes {
		return fmt.Errorf("part_size_bytes: must be %d (5 MiB) to %d (5 GiB)", MinPartSizeBytes, MaxPartSizeBytes)
	}
	return nil
}

// Redacted is the config as stored with a run: it never holds credentials, so it is the
// normalized config itself.
func (c Config) Redacted() Config { return c.Normalized() }

// parseEndpoint returns host[:port] and whether TLS is used.
func parseEndpoint(raw string) (host string, secure bool, err error) {
	if raw == "" {
		return "", false, errors.New("endpoint: required, e.g. https://s3.eu-central-1.amazonaws.com")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, errors.New("endpoint: not a valid URL")
	}
	if u.User != nil {
		return "", false, errors.New("endpoint: must not carry a user name or password; credentials come from the S3 secret")
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", false, errors.New("endpoint: must be an absolute http or https URL")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false, errors.New("endpoint: must not have a query string or fragment")
	}
	if u.Path != "" && u.Path != "/" {
		return "", false, errors.New("endpoint: must not have a path; put the bucket in bucket and folders in prefix")
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return "", false, errors.New("endpoint: empty port")
	}
	return u.Host, scheme == "https", nil
}

func validateRegion(r string) error {
	if len(r) > 64 {
		return errors.New("region: at most 64 characters")
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errors.New("region: only lower-case letters, digits, '-' and '_' (e.g. us-east-1, auto)")
		}
	}
	return nil
}

// ValidateBucket applies S3's bucket naming rules: 3 to 63 characters of lower-case letters,
// digits, '.' and '-', starting and ending with a letter or digit, no "..", not an IP address.
func ValidateBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return errors.New("bucket: must be 3 to 63 characters")
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket: %q may hold only lower-case letters, digits, '.' and '-'", b)
		}
	}
	isAlnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	switch {
	case !isAlnum(b[0]) || !isAlnum(b[len(b)-1]):
		return fmt.Errorf("bucket: %q must start and end with a letter or digit", b)
	case strings.Contains(b, ".."), strings.Contains(b, ".-"), strings.Contains(b, "-."):
		return fmt.Errorf("bucket: %q must not have '.' next to '.' or '-'", b)
	case net.ParseIP(b) != nil:
		return fmt.Errorf("bucket: %q must not look like an IP address", b)
	}
	return nil
}

// validatePrefix checks a normalized prefix: "/"-separated segments, none empty, "." or "..",
// valid UTF-8 without control characters.
func validatePrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPrefixLen {
		return fmt.Errorf("prefix: at most %d bytes", MaxPrefixLen)
	}
	if !utf8.ValidString(p) {
		return errors.New("prefix: not valid UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == '\\' {
			return errors.New("prefix: must not contain control characters or '\\'")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return errors.New("prefix: must not contain empty segments (\"//\")")
		case ".", "..":
			return errors.New("prefix: must not contain \".\" or \"..\" segments")
		}
	}
	return nil
}

// Credentials are the secret of kind "s3": {"access_key_id":"…","secret_access_key":"…"}.
type Credentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
}

// ParseCredentials decodes and validates the secret's JSON.
func ParseCredentials(raw json.RawMessage) (Credentials, error) {
	var c Credentials
	err := strictjson.Decode(raw, &c)
	if errors.Is(err, strictjson.ErrTrailingData) {
		// A second value after the object would be silently ignored by Decode; a secret is one object.
		return Credentials{}, errors.New("s3 credentials: unexpected data after the JSON object")
	}
	if err != nil {
		// The decoder's message may quote a value; keep only what kind of failure it was.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Credentials{}, fmt.Errorf("s3 credentials: invalid JSON at offset %d", se.Offset)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Credentials{}, fmt.Errorf("s3 credentials: %s must be a string", te.Field)
		}
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return Credentials{}, fmt.Errorf("s3 credentials: %s (only access_key_id and secret_access_key)", err.Error())
		}
		return Credentials{}, errors.New("s3 credentials: invalid JSON")
	}
	if err := c.Validate(); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// Validate checks that both keys are present and printable.
func (c Credentials) Validate() error {
	if c.AccessKeyID == "" || len(c.AccessKeyID) > 256 {
		return errors.New("s3 credentials: access_key_id must be 1 to 256 characters")
	}
	if c.SecretAccessKey == "" || len(c.SecretAccessKey) > 256 {
		return errors.New("s3 credentials: secret_access_key must be 1 to 256 characters")
	}
	for _, s := range []string{c.AccessKeyID, c.SecretAccessKey} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] >= 0x7f {
				return errors.New("s3 credentials: keys must be printable ASCII without spaces")
			}
		}
	}
	return nil
}

// String never shows the secret key, so a stray %v cannot leak it.
func (c Credentials) String() string { return "s3 credentials for access key " + c.AccessKeyID }

// GoString is String for %#v.
func (c Credentials) GoString() string { return c.String() }
