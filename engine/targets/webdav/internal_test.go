package webdav

import (
	"strings"
	"testing"
	"time"
)

func TestParseMultistatus(t *testing.T) {
	t.Parallel()
	const doc = `<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:" xmlns:x="urn:other">
 <d:response><d:href>/dav/job/run/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response><d:href>http://host:8080/dav/job/run/na%C3%AFve%20name%231</d:href>
  <d:propstat><d:prop><d:resourcetype/><d:getcontentlength>45</d:getcontentlength>
   <d:getlastmodified>Tue, 04 Mar 2025 05:06:07 GMT</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response><d:href>/dav/job/run/sub/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype><d:getcontentlength>4096</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><d:getlastmodified/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response><d:href>/dav/job/run/a%2Fb</d:href>
  <d:propstat><d:prop><d:getcontentlength>7</d:getcontentlength></d:prop></d:propstat>
 </d:response>
</d:multistatus>`
	entries, err := parseMultistatus(strings.NewReader(doc), "/dav/job/run")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Href: "/dav/job/run/a/b", Name: "b", Kind: KindFile, Size: 7},
		{Href: "/dav/job/run/naïve name#1", Name: "naïve name#1", Kind: KindFile, Size: 45, MTime: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)},
		{Href: "/dav/job/run/sub/", Name: "sub", Kind: KindDir},
	}
	if len(entries) != len(want) {
		t.Fatalf("entries = %+v", entries)
	}
	for i := range want {
		if entries[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, entries[i], want[i])
		}
	}
	if _, err := parseMultistatus(strings.NewReader("<html>oops"), "/"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestEscapeAndParents(t *testing.T) {
	t.Parallel()
	if got := escapeSegment("a b;c=d/é~_-."); got != "a%20b%3Bc%3Dd%2F%C3%A9~_-." {
		t.Errorf("escapeSegment = %q", got)
	}
	for in, want := range map[string]string{
		"http://h/a/b/c/": "http://h/a/b/",
		"http://h/a/b/c":  "http://h/a/b/",
		"http://h/a/":     "",
		"http://h/":       "",
	} {
		got, ok := parentCollection(in)
		if got != want || ok != (want != "") {
			t.Errorf("parentCollection(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
