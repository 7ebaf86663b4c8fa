package jobspec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// base is a valid legacy v1 filesystem spec; cases patch it with JSON merges.
const base = `{"v":1,"type":"filesystem","source":{"paths":["/srv/app"]},"target":{"type":"local_dir","base_dir":"/srv/bk"}}`

// merge applies a shallow-recursive JSON merge patch (null deletes) to base.
func merge(t *testing.T, doc, patch string) string {
	t.Helper()
	var d, p map[string]any
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatal(err)
	}
	var apply func(d, p map[string]any)
	apply = func(d, p map[string]any) {
		for k, v := range p {
			if v == nil {
				delete(d, k)
				continue
			}
			pm, ok1 := v.(map[string]any)
			dm, ok2 := d[k].(map[string]any)
			if ok1 && ok2 {
				apply(dm, pm)
				continue
			}
			d[k] = v
		}
	}
	apply(d, p)
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	webdav := `{"target":{"type":"webdav","base_url":"https://dav.example/x","secret_name":"s","base_dir":null}}`
	for _, tc := range []struct {
		name  string
		patch string // merged into base; a full document when it starts with "!"
		field string // empty: valid
		msg   string // substring of the message
	}{
		{"Minimal", `{}`, "", ""},
		{"NotAnObject", `![1,2]`, "spec", "JSON object"},
		{"MissingV", `{"v":null}`, "spec.v", "required"},
		{"WrongV", `{"v":3}`, "spec.v", "version"},
		{"UnknownType", `{"type":"ftp"}`, "spec.type", "filesystem, sqlite or vaultwarden"},
		{"UnknownField", `{"pipeline":{"formatt":"archive_v1"}}`, "spec", "unknown field"},
		{"WrongFieldType", `{"source":{"pre_scan":"yes"}}`, "spec.source", "pre_scan"},
		{"MissingSource", `{"source":null}`, "spec.source", "required"},
		// pipeline
		{"BadFormat", `{"pipeline":{"format":"zip"}}`, "spec.pipeline.format", "archive_v1 or raw_tree_v1"},
		{"RawTreeOK", `{"pipeline":{"format":"raw_tree_v1"}}`, "", ""},
		{"RawTreeSQLiteOK", `!{"v":1,"type":"sqlite","pipeline":{"format":"raw_tree_v1"},"source":{"path":"/db.sqlite3"},"target":{"type":"local_dir","base_dir":"/bk"}}`, "", ""},
		{"RawTreeWebDAVOK", `!{"v":1,"type":"filesystem","source":{"paths":["/a"]},"pipeline":{"format":"raw_tree_v1","webdav":{"raw_tree_direct":{"mode":"off","limits":{"concurrency":8}}}},"target":{"type":"webdav","base_url":"https://dav/x","secret_name":"s"}}`, "", ""},
		{"RawTreeDirectOn", `!{"v":1,"type":"filesystem","source":{"paths":["/a"]},"pipeline":{"format":"raw_tree_v1","webdav":{"raw_tree_direct":{"mode":"on"}}},"target":{"type":"webdav","base_url":"https://dav/x","secret_name":"s"}}`, "spec.pipeline.webdav.raw_tree_direct.mode", "not supported"},
		{"RawTreeDirectAuto", `!{"v":1,"type":"filesystem","source":{"paths":["/a"]},"pipeline":{"format":"raw_tree_v1","webdav":{"raw_tree_direct":{"mode":"auto"}}},"target":{"type":"webdav","base_url":"https://dav/x","secret_name":"s"}}`, "spec.pipeline.webdav.raw_tree_direct.mode", "set it to off"},
		{"RawTreeDirectNeedsWebDAV", `{"pipeline":{"format":"raw_tree_v1","webdav":{"raw_tree_direct":{"mode":"on"}}}}`, "spec.pipeline.webdav.raw_tree_direct.mode", "webdav"},
		{"RawTreeWithEncryption", `{"pipeline":{"format":"raw_tree_v1","encryption":{"type":"age_x25519","key_name":"k"}}}`, "spec.pipeline.encryption", "raw_tree_v1"},
		{"AgeOK", `{"pipeline":{"encryption":{"type":"age_x25519","key_name":"default"}}}`, "", ""},
		{"AgeBlankKey", `{"pipeline":{"encryption":{"type":"age_x25519","key_name":"  "}}}`, "spec.pipeline.encryption.key_name", "required"},
		{"AgeNoKey", `{"pipeline":{"encryption":{"type":"age_x25519"}}}`, "spec.pipeline.encryption.key_name", "required"},
		{"NoneWithKey", `{"pipeline":{"encryption":{"type":"none","key_name":"k"}}}`, "spec.pipeline.encryption.key_name", "only allowed"},
		{"BadEncryption", `{"pipeline":{"encryption":{"type":"gpg"}}}`, "spec.pipeline.encryption.type", "none or age_x25519"},
		{"DirectBadMode", `{"pipeline":{"webdav":{"raw_tree_direct":{"mode":"maybe"}}}}`, "spec.pipeline.webdav.raw_tree_direct.mode", "off, auto or on"},
		{"DirectNeedsRawTree", `{"pipeline":{"webdav":{"raw_tree_direct":{"mode":"on"}}}}`, "spec.pipeline.webdav.raw_tree_direct.mode", "raw_tree_v1"},
		{"DirectLimitsConcurrency", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"concurrency":0}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.concurrency", "1..128"},
		{"DirectLimitsConcurrencyHigh", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"concurrency":129}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.concurrency", "1..128"},
		{"DirectLimitsDefaultConcurrency", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"put_qps":5}}}}}`, "", ""},
		{"DirectLimitsQPS", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"head_qps":10001}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.head_qps", "1..10000"},
		{"DirectLimitsBurst", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"burst":0}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.burst", "1..100000"},
		{"DirectLimitsTimeout", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"request_timeout_secs":3601}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.request_timeout_secs", "1..3600"},
		{"DirectLimitsConnectTimeout", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"connect_timeout_secs":0}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.connect_timeout_secs", "1..3600"},
		{"DirectLimitsAttempts", `{"pipeline":{"webdav":{"raw_tree_direct":{"limits":{"max_put_attempts":21}}}}}`, "spec.pipeline.webdav.raw_tree_direct.limits.max_put_attempts", "1..20"},
		// notifications
		{"NotifyBadMode", `{"notifications":{"mode":"loud"}}`, "spec.notifications.mode", "inherit or custom"},
		{"NotifyBlankName", `{"notifications":{"mode":"custom","email":["ops"," "]}}`, "spec.notifications.email", "blank"},
		{"NotifyBlankWebhook", `{"notifications":{"mode":"custom","webhook":[""]}}`, "spec.notifications.webhook", "blank"},
		{"NotifyInheritIgnoresLists", `{"notifications":{"mode":"inherit","wecom_bot":[""]}}`, "", ""},
		{"NotifyCustomOK", `{"notifications":{"mode":"custom","wecom_bot":["team"],"email":["ops"],"webhook":["hook"]}}`, "", ""},
		// retention
		{"RetentionEnabledEmpty", `{"retention":{"enabled":true}}`, "spec.retention.enabled", "keep_last or keep_days"},
		{"RetentionEnabledZeros", `{"retention":{"enabled":true,"keep_last":0,"keep_days":0}}`, "spec.retention.enabled", "keep_last or keep_days"},
		{"RetentionGFSOnly", `{"retention":{"enabled":true,"keep_daily":7,"keep_weekly":4,"keep_monthly":12,"keep_yearly":3,"keep_hourly":24}}`, "", ""},
		{"RetentionGFSZeros", `{"retention":{"enabled":true,"keep_daily":0,"keep_yearly":0}}`, "spec.retention.enabled", "keep_last or keep_days"},
		{"RetentionWeeklyNegative", `{"retention":{"keep_weekly":-1}}`, "spec.retention.keep_weekly", "0..10000"},
		{"RetentionHourlyTooMany", `{"retention":{"keep_hourly":10001}}`, "spec.retention.keep_hourly", "0..10000"},
		// hooks
		{"HooksOK", `{"hooks":{"before":{"command":["pg_dump","-f","/srv/app/db.sql"],"timeout_seconds":600,"on_failure":"continue"},"after":{"command":["curl","-fsS","https://hc.example/ping"],"when":"success"}}}`, "", ""},
		{"HooksEmpty", `{"hooks":{}}`, "", ""},
		{"HooksNoCommand", `{"hooks":{"before":{"command":[]}}}`, "spec.hooks.before.command", "needs a program"},
		{"HooksBlankProgram", `{"hooks":{"after":{"command":[" ","x"]}}}`, "spec.hooks.after.command", "needs a program"},
		{"HooksCommandString", `{"hooks":{"before":{"command":"pg_dump -f x"}}}`, "spec", "must be []string"},
		{"HooksTimeoutZero", `{"hooks":{"before":{"command":["true"],"timeout_seconds":0}}}`, "spec.hooks.before.timeout_seconds", "1..86400"},
		{"HooksTimeoutTooLong", `{"hooks":{"after":{"command":["true"],"timeout_seconds":86401}}}`, "spec.hooks.after.timeout_seconds", "1..86400"},
		{"HooksBadOnFailure", `{"hooks":{"before":{"command":["true"],"on_failure":"ignore"}}}`, "spec.hooks.before.on_failure", "abort or continue"},
		{"HooksBadWhen", `{"hooks":{"after":{"command":["true"],"when":"sometimes"}}}`, "spec.hooks.after.when", "always, success or failure"},
		{"HooksUnknownField", `{"hooks":{"before":{"command":["true"],"shell":true}}}`, "spec", "unknown field \"shell\""},
		{"HooksNUL", `{"hooks":{"before":{"command":["true","a\u0000b"]}}}`, "spec.hooks.before.command", "NUL"},
		{"HooksArgsAtLimit", `{"hooks":{"after":{"command":["true"` + strings.Repeat(`,"a"`, MaxHookArgs-1) + `]}}}`, "", ""},
		{"HooksTooManyArgs", `{"hooks":{"before":{"command":["true"` + strings.Repeat(`,"a"`, MaxHookArgs) + `]}}}`, "spec.hooks.before.command", "at most 256 arguments"},
		{"RetentionKeepLast", `{"retention":{"enabled":true,"keep_last":3}}`, "", ""},
		{"RetentionKeepDays", `{"retention":{"enabled":true,"keep_days":30}}`, "", ""},
		{"RetentionKeepLastHigh", `{"retention":{"keep_last":10001}}`, "spec.retention.keep_last", "10000"},
		{"RetentionKeepDaysHigh", `{"retention":{"keep_days":3651}}`, "spec.retention.keep_days", "3650"},
		{"RetentionKeepLastNegative", `{"retention":{"keep_last":-1}}`, "spec.retention.keep_last", "0..10000"},
		{"RetentionTickZero", `{"retention":{"max_delete_per_tick":0}}`, "spec.retention.max_delete_per_tick", "1..10000"},
		{"RetentionTickHigh", `{"retention":{"max_delete_per_tick":10001}}`, "spec.retention.max_delete_per_tick", "1..10000"},
		{"RetentionDayZero", `{"retention":{"max_delete_per_day":0}}`, "spec.retention.max_delete_per_day", "1..100000"},
		{"RetentionDayHigh", `{"retention":{"max_delete_per_day":100001}}`, "spec.retention.max_delete_per_day", "1..100000"},
		// filesystem source
		{"FsNoPaths", `{"source":{"paths":[]}}`, "spec.source.paths", "at least one"},
		{"FsBlankPaths", `{"source":{"paths":[" ",""]}}`, "spec.source.paths", "at least one"},
		{"FsBlankAmongPaths", `{"source":{"paths":["","/srv/a"]}}`, "", ""},
		{"FsRelativePath", `{"source":{"paths":["srv/app"]}}`, "spec.source.paths[0]", "absolute"},
		{"FsDotDot", `{"source":{"paths":["/srv/../etc"]}}`, "spec.source.paths[0]", ".."},
		{"FsLegacyRoot", `{"source":{"paths":null,"root":"/srv/app"}}`, "", ""},
		{"FsRootAndPaths", `{"source":{"root":"/srv"}}`, "spec.source.root", "cannot be combined"},
		{"FsBadGlob", `{"source":{"exclude":["**/node_modules","{a,b"]}}`, "spec.source.exclude[1]", "glob"},
		{"FsEmptyGlob", `{"source":{"include":[""]}}`, "spec.source.include[0]", "empty"},
		{"FsSymlinkFollow", `{"source":{"symlink_policy":"follow"}}`, "", ""},
		{"FsSymlinkSkip", `{"source":{"symlink_policy":"skip"}}`, "", ""},
		{"FsSymlinkBad", `{"source":{"symlink_policy":"deref"}}`, "spec.source.symlink_policy", "keep, follow or skip"},
		{"FsHardlinkKeep", `{"source":{"hardlink_policy":"keep"}}`, "", ""},
		{"FsHardlinkBad", `{"source":{"hardlink_policy":"link"}}`, "spec.source.hardlink_policy", "copy or keep"},
		{"FsErrorPolicy", `{"source":{"error_policy":"skip_fail"}}`, "", ""},
		{"FsErrorPolicyBad", `{"source":{"error_policy":"ignore"}}`, "spec.source.error_policy", "fail_fast, skip_fail or skip_ok"},
		{"FsSnapshotRequired", `{"source":{"snapshot_mode":"required"}}`, "spec.source.snapshot_mode", "not supported"},
		{"FsSnapshotAuto", `{"source":{"snapshot_mode":"auto","snapshot_provider":"btrfs"}}`, "", ""},
		{"FsSnapshotBad", `{"source":{"snapshot_mode":"lvm"}}`, "spec.source.snapshot_mode", "off, auto or required"},
		{"FsSnapshotProviderBad", `{"source":{"snapshot_provider":"zfs"}}`, "spec.source.snapshot_provider", "btrfs"},
		{"FsConsistencyBad", `{"source":{"consistency_policy":"strict"}}`, "spec.source.consistency_policy", "warn, fail or ignore"},
		{"FsConsistencyFail", `{"source":{"consistency_policy":"fail","consistency_fail_threshold":3}}`, "", ""},
		{"FsConsistencyThresholdNegative", `{"source":{"consistency_policy":"fail","consistency_fail_threshold":-1}}`, "spec.source.consistency_fail_threshold", ">= 0"},
		{"FsConsistencyFailUpload", `{"source":{"consistency_policy":"fail","upload_on_consistency_failure":true}}`, "spec.source.upload_on_consistency_failure", "not supported"},
		{"FsWarnUpload", `{"source":{"consistency_policy":"warn","upload_on_consistency_failure":true}}`, "", ""},
		// sqlite / vaultwarden
		{"SQLiteOK", `!{"v":1,"type":"sqlite","source":{"path":"/var/lib/app/db.sqlite3","integrity_check":true},"target":{"type":"local_dir","base_dir":"/bk"}}`, "", ""},
		{"SQLiteNoPath", `!{"v":1,"type":"sqlite","source":{"path":" "},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.source.path", "required"},
		{"SQLiteRelative", `!{"v":1,"type":"sqlite","source":{"path":"db.sqlite3"},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.source.path", "absolute"},
		{"SQLiteUnknownField", `!{"v":1,"type":"sqlite","source":{"path":"/db","paths":["/x"]},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.source", "unknown field"},
		{"VaultwardenOK", `!{"v":1,"type":"vaultwarden","source":{"data_dir":"/vw/data"},"target":{"type":"local_dir","base_dir":"/bk"}}`, "", ""},
		{"VaultwardenNoDir", `!{"v":1,"type":"vaultwarden","source":{"data_dir":""},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.source.data_dir", "required"},
		{"VaultwardenRawTree", `!{"v":1,"type":"vaultwarden","pipeline":{"format":"raw_tree_v1"},"source":{"data_dir":"/vw"},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.pipeline.format", "archive_v1"},
		{"VaultwardenConsistency", `!{"v":1,"type":"vaultwarden","source":{"data_dir":"/vw","consistency_policy":"nope"},"target":{"type":"local_dir","base_dir":"/bk"}}`, "spec.source.consistency_policy", "warn"},
		// targets
		{"TargetMissingType", `{"target":{"type":""}}`, "spec.target.type", "required"},
		{"TargetBadType", `{"target":{"type":"ftp"}}`, "spec.target.type", "local_dir, s3 or webdav"},
		{"LocalBlankDir", `{"target":{"base_dir":" "}}`, "spec.target.base_dir", "required"},
		{"LocalRelativeDir", `{"target":{"base_dir":"bk"}}`, "spec.target.base_dir", "absolute"},
		{"LocalWithURL", `{"target":{"base_url":"https://x/"}}`, "spec.target.base_url", "no base_url"},
		{"PartSizeSmall", `{"target":{"part_size_bytes":1048575}}`, "spec.target.part_size_bytes", "1048576"},
		{"PartSizeMin", `{"target":{"part_size_bytes":1048576}}`, "", ""},
		{"WebDAVOK", webdav, "", ""},
		{"WebDAVNoURL", `{"target":{"type":"webdav","base_url":"","secret_name":"s","base_dir":null}}`, "spec.target.base_url", "required"},
		{"WebDAVFTP", `{"target":{"type":"webdav","base_url":"ftp://dav/x","secret_name":"s","base_dir":null}}`, "spec.target.base_url", "http or https"},
		{"WebDAVNotURL", `{"target":{"type":"webdav","base_url":"dav/x","secret_name":"s","base_dir":null}}`, "spec.target.base_url", "http or https"},
		{"WebDAVUserinfo", `{"target":{"type":"webdav","base_url":"https://u:p@dav/x","secret_name":"s","base_dir":null}}`, "spec.target.base_url", "user name or password"},
		{"WebDAVNoSecret", `{"target":{"type":"webdav","base_url":"https://dav/x","secret_name":" ","base_dir":null}}`, "spec.target.secret_name", "required"},
		{"WebDAVWithBaseDir", `{"target":{"type":"webdav","base_url":"https://dav/x","secret_name":"s"}}`, "spec.target.base_dir", "no base_dir"},
		{"TargetUnknownField", `{"target":{"password":"hunter2"}}`, "spec.target.password", "a local_dir target takes no password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.patch
			if strings.HasPrefix(doc, "!") {
				doc = doc[1:]
			} else {
				doc = merge(t, base, doc)
			}
			_, err := ParseAndValidate([]byte(doc))
			checkErr(t, err, tc.field, tc.msg)
		})
	}
}

func checkErr(t *testing.T, err error, field, msg string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var je *Error
	if !errors.As(err, &je) {
		t.Fatalf("err = %v, want *jobspec.Error on %s", err, field)
	}
	if je.Field != field || !strings.Contains(je.Message, msg) {
		t.Fatalf("error field=%q message=%q, want field %q containing %q", je.Field, je.Message, field, msg)
	}
	if je.Reason == "" {
		t.Fatalf("error %q has no reason", je.Message)
	}
	if strings.Contains(je.Message, "hunter2") {
		t.Fatalf("error echoes a value: %q", je.Message)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	s, err := ParseAndValidate([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	fs := s.Filesystem
	if s.Type != TypeFilesystem || fs == nil || s.SQLite != nil || s.Vaultwarden != nil {
		t.Fatalf("source not typed: %+v", s)
	}
	if !fs.PreScan || fs.SymlinkPolicy != "keep" || fs.HardlinkPolicy != "copy" || fs.ErrorPolicy != "fail_fast" ||
		fs.SnapshotMode != "off" || fs.ConsistencyPolicy != "warn" || fs.Include == nil || fs.Exclude == nil {
		t.Fatalf("filesystem defaults: %+v", fs)
	}
	if s.Pipeline.Format != FormatArchiveV1 || s.Pipeline.Encryption.Type != EncryptionNone ||
		s.Pipeline.WebDAV.RawTreeDirect.Mode != "off" || !s.Pipeline.WebDAV.RawTreeDirect.ResumeBySize {
		t.Fatalf("pipeline defaults: %+v", s.Pipeline)
	}
	if s.Target.PartSizeBytes != 256<<20 {
		t.Fatalf("part size default %d", s.Target.PartSizeBytes)
	}
	if s.Retention.MaxDeletePerTick != 50 || s.Retention.MaxDeletePerDay != 200 || s.Retention.Enabled || s.HasRetention {
		t.Fatalf("retention defaults: %+v has=%v", s.Retention, s.HasRetention)
	}
	if s.Notifications.Mode != NotifyInherit {
		t.Fatalf("notifications default: %+v", s.Notifications)
	}
	s2, err := ParseAndValidate([]byte(merge(t, base, `{"retention":{"enabled":false}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if !s2.HasRetention {
		t.Fatal("HasRetention false with a retention object")
	}
}

func TestV2TranslatesToV1(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		field     string
		msg       string
		check     func(t *testing.T, s *Spec)
	}{
		{"WebDAVAuthRef", `{"v":2,"pipeline":{"format":"archive_v1"},
			"source":{"type":"sqlite","version":1,"config":{"path":"/tmp/db.sqlite3","integrity_check":true}},
			"target":{"type":"webdav","version":1,"config":{"base_url":"https://dav.example/b","part_size_bytes":1048576},
			"auth_refs":{"webdav_credentials":{"secret_type":"webdav","secret_name":" main "}}}}`, "", "",
			func(t *testing.T, s *Spec) {
				if s.V != 1 || s.Type != TypeSQLite || s.SQLite.Path != "/tmp/db.sqlite3" || !s.SQLite.IntegrityCheck {
					t.Fatalf("source: %+v %+v", s, s.SQLite)
				}
				want := `{"type":"webdav","base_url":"https://dav.example/b","secret_name":"main"}`
				if got := string(s.Target.Redacted().JSON()); s.Target.Type != "webdav" || got != want || s.Target.PartSizeBytes != 1<<20 {
					t.Fatalf("target %s (part size %d), want %s", got, s.Target.PartSizeBytes, want)
				}
			}},
		{"OtherAuthRefKey", `{"v":2,"source":{"type":"filesystem","config":{"paths":["/a"]}},
			"target":{"type":"webdav","config":{"base_url":"https://dav/"},"auth_refs":{"x":{"secret_type":"webdav","secret_name":"n"}}}}`, "", "",
			func(t *testing.T, s *Spec) {
				if s.Target.SecretName() != "n" || s.Target.PartSizeBytes != DefaultPartSizeBytes || !s.Filesystem.PreScan {
					t.Fatalf("got %+v", s)
				}
			}},
		{"LocalDir", `{"source":{"type":"vaultwarden","version":1,"config":{"data_dir":"/vw"}},
			"target":{"type":"local_dir","version":1,"config":{"base_dir":"/bk"}}}`, "", "",
			func(t *testing.T, s *Spec) {
				if s.Type != TypeVaultwarden || string(s.Target.Redacted().JSON()) != `{"type":"local_dir","base_dir":"/bk"}` || s.Vaultwarden.ConsistencyPolicy != "warn" {
					t.Fatalf("got %+v", s)
				}
			}},
		{"InlinePassword", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},
			"target":{"type":"webdav","config":{"base_url":"https://dav/","username":"u","password":"hunter2"},
			"auth_refs":{"webdav_credentials":{"secret_type":"webdav","secret_name":"m"}}}}`,
			"spec.target.config.username", "credentials must use target.auth_refs", nil},
		{"InlineSecretName", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},
			"target":{"type":"webdav","config":{"base_url":"https://dav/","secret_name":"x"}}}`,
			"spec.target.config.secret_name", "auth_refs", nil},
		{"NoAuthRefs", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"webdav","config":{"base_url":"https://dav/"}}}`,
			"spec.target.auth_refs", "webdav credentials", nil},
		{"TwoAuthRefs", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"webdav","config":{"base_url":"https://dav/"},
			"auth_refs":{"a":{"secret_type":"webdav","secret_name":"1"},"b":{"secret_type":"webdav","secret_name":"2"}}}}`,
			"spec.target.auth_refs", "only one", nil},
		{"WrongAuthRefType", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"webdav","config":{"base_url":"https://dav/"},
			"auth_refs":{"webdav_credentials":{"secret_type":"smtp","secret_name":"1"}}}}`,
			"spec.target.auth_refs", "secret_type must be webdav", nil},
		{"LocalDirAuthRefs", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"local_dir","config":{"base_dir":"/bk"},
			"auth_refs":{"webdav_credentials":{"secret_type":"webdav","secret_name":"1"}}}}`,
			"spec.target.auth_refs", "local_dir", nil},
		{"UnknownSourceDriver", `{"v":2,"source":{"type":"mysql","version":1,"config":{}},"target":{"type":"local_dir","config":{"base_dir":"/bk"}}}`,
			"spec.source.type", "unsupported source driver: mysql@1", nil},
		{"UnknownSourceVersion", `{"v":2,"source":{"type":"sqlite","version":2,"config":{"path":"/db"}},"target":{"type":"local_dir","config":{"base_dir":"/bk"}}}`,
			"spec.source.type", "unsupported source driver: sqlite@2", nil},
		{"UnknownTargetDriver", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"ftp","config":{}}}`,
			"spec.target.type", "unsupported target driver: ftp@1", nil},
		{"SourceVersionZero", `{"v":2,"source":{"type":"sqlite","version":0,"config":{"path":"/db"}},"target":{"type":"local_dir","config":{"base_dir":"/bk"}}}`,
			"spec.source.version", ">= 1", nil},
		{"MissingTarget", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}}}`, "spec.target", "required", nil},
		{"WrongV", `{"v":5,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"local_dir","config":{"base_dir":"/bk"}}}`,
			"spec.v", "must be 2", nil},
		{"ValidatesTranslated", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db"}},"target":{"type":"local_dir","config":{"base_dir":"/bk","part_size_bytes":10}}}`,
			"spec.target.part_size_bytes", "1 MiB", nil},
		{"ConfigUnknownField", `{"v":2,"source":{"type":"sqlite","config":{"path":"/db","x":1}},"target":{"type":"local_dir","config":{"base_dir":"/bk"}}}`,
			"spec.source.config", "unknown field", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseAndValidate([]byte(tc.doc))
			checkErr(t, err, tc.field, tc.msg)
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	in := `{"v":1,"type":"filesystem","pipeline":{"format":"archive_v1","encryption":{"type":"age_x25519","key_name":"default"}},
		"notifications":{"mode":"custom","wecom_bot":["t"],"email":[]},
		"retention":{"enabled":true,"keep_last":7,"keep_days":null,"max_delete_per_tick":5,"max_delete_per_day":9},
		"source":{"paths":["/a","/b"],"exclude":["**/node_modules"],"error_policy":"skip_ok","consistency_fail_threshold":2},
		"target":{"type":"webdav","base_url":"https://dav/x","secret_name":"s","part_size_bytes":2097152}}`
	s1, err := ParseAndValidate([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(s1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseAndValidate(out)
	if err != nil {
		t.Fatalf("re-parse %s: %v", out, err)
	}
	s1.HasRetention, s2.HasRetention = false, false
	if !reflect.DeepEqual(s1, s2) {
		t.Fatalf("round trip differs:\n%+v\n%+v\n%s", s1, s2, out)
	}
	var generic map[string]any
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatal(err)
	}
	if generic["type"] != "filesystem" || generic["v"].(float64) != 1 {
		t.Fatalf("marshalled shape: %s", out)
	}
	if _, ok := generic["source"].(map[string]any)["root"]; ok {
		t.Fatalf("empty root must be omitted: %s", out)
	}
}

// A spec of today (no hooks, no GFS rules) writes back exactly the keys it had: nothing new
// appears in stored specs or in the retention JSON.
func TestTodaysSpecMarshalsUnchanged(t *testing.T) {
	t.Parallel()
	s, err := ParseAndValidate([]byte(merge(t, base, `{"retention":{"enabled":true,"keep_last":3,"keep_days":7}}`)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hooks") || strings.Contains(string(out), "keep_daily") {
		t.Fatalf("new keys in a spec that has none: %s", out)
	}
	r, err := json.Marshal(s.Retention)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"enabled":true,"keep_last":3,"keep_days":7,"max_delete_per_tick":50,"max_delete_per_day":200}`; string(r) != want {
		t.Fatalf("retention JSON %s, want %s", r, want)
	}
}

func TestHookDefaultsAndRoundTrip(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		merge(t, base, `{"hooks":{"before":{"command":["pg_dump"]},"after":{"command":["curl","u"]}}}`),
		`{"v":2,"source":{"type":"filesystem","config":{"paths":["/a"]}},"target":{"type":"local_dir","config":{"base_dir":"/b"}},
			"hooks":{"before":{"command":["pg_dump"]},"after":{"command":["curl","u"]}}}`,
	} {
		s, err := ParseAndValidate([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		want := &Hooks{Before: &BeforeHook{Command: []string{"pg_dump"}, TimeoutSeconds: 300, OnFailure: HookAbort},
			After: &AfterHook{Command: []string{"curl", "u"}, TimeoutSeconds: 300, When: HookAlways}}
		if !reflect.DeepEqual(s.Hooks, want) {
			t.Fatalf("hooks %+v %+v", s.Hooks.Before, s.Hooks.After)
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParseAndValidate(out)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s2.Hooks, want) || !SameHooks(s, s2) {
			t.Fatalf("round trip lost hooks: %s", out)
		}
	}
	empty, err := ParseAndValidate([]byte(merge(t, base, `{"hooks":{}}`)))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := ParseAndValidate([]byte(base))
	if empty.HasHooks() || !SameHooks(empty, plain) {
		t.Fatal("an empty hooks object must equal no hooks")
	}
}
