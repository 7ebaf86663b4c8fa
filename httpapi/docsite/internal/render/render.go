// Package render turns the operator docs (docs/*.md) into the static pages served under /docs:
// one page per document, an index listing them, and a stylesheet. It runs at build time (go
// generate in httpapi/docsite), never in the Hub.
package render

import (
	"bytes"
	"fmt"
	"html/template"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
	"github.com/yuin/goldmark/text"
)

// Doc is one rendered document.
type Doc struct {
	Name  string // file name without .md: the page is /docs/<Name>
	Title string // the first heading, or Name
}

// Site renders every *.md directly in dir into files named <name>.html, plus index.html and
// docs.css, and returns them by file name with the list of documents in name order.
func Site(dir string) (map[string][]byte, []Doc, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, nil, fmt.Errorf("list docs in %s: %w", dir, err)
	}
	slices.Sort(paths)
	names := map[string]bool{}
	for _, p := range paths {
		names[strings.TrimSuffix(filepath.Base(p), ".md")] = true
	}
	md := goldmark.New(
		goldmark.WithExtensions(extension.GFM),
		goldmark.WithParserOptions(parser.WithAutoHeadingID()),
	)
	files := map[string][]byte{"docs.css": []byte(stylesheet)}
	var docs []Doc
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", p, err)
		}
		name := strings.TrimSuffix(filepath.Base(p), ".md")
		doc := md.Parser().Parse(text.NewReader(src))
		title := rewrite(doc, src, names)
		if title == "" {
			title = name
		}
		var body bytes.Buffer
		if err := md.Renderer().Render(&body, src, doc); err != nil {
			return nil, nil, fmt.Errorf("render %s: %w", p, err)
		}
		page, err := pageHTML(title, template.HTML(body.String()))
		if err != nil {
			return nil, nil, fmt.Errorf("render %s: %w", p, err)
		}
		files[name+".html"] = page
		docs = append(docs, Doc{Name: name, Title: title})
	}
	var list bytes.Buffer
	if err := indexTmpl.Execute(&list, docs); err != nil {
		return nil, nil, fmt.Errorf("render docs index: %w", err)
	}
	index, err := pageHTML("Bastion documentation", template.HTML(list.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("render docs index: %w", err)
	}
	files["index.html"] = index
	return files, docs, nil
}

// rewrite points relative links to another document (other.md, other.md#part) at its rendered
// page (other, other#part) and returns the text of the first heading. Pages are served at
// /docs/<name>, so a sibling's name alone resolves to /docs/<other>.
func rewrite(doc ast.Node, src []byte, names map[string]bool) string {
	var title string
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			if title == "" && n.Level == 1 {
				title = headingText(n, src)
			}
		case *ast.Link:
			if dest, ok := docLink(string(n.Destination), names); ok {
				n.Destination = []byte(dest)
			}
		}
		return ast.WalkContinue, nil
	})
	return title
}

func headingText(n ast.Node, src []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if entering {
			if t, ok := c.(*ast.Text); ok {
				b.Write(t.Segment.Value(src))
			}
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// docLink maps a link to a sibling document onto its page; anything else (absolute URLs, other
// directories, files that are not docs) is left alone.
func docLink(dest string, names map[string]bool) (string, bool) {
	u, err := url.Parse(dest)
	if err != nil || u.Scheme != "" || u.Host != "" || u.RawQuery != "" {
		return "", false
	}
	p := strings.TrimPrefix(u.Path, "./")
	if !strings.HasSuffix(p, ".md") || strings.Contains(p, "/") {
		return "", false
	}
	name := strings.TrimSuffix(p, ".md")
	if !names[name] {
		return "", false
	}
	if u.Fragment != "" {
		return name + "#" + u.Fragment, true
	}
	return name, true
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{.Title}} · Bastion</title>
<link rel="stylesheet" href="/docs/docs.css">
</head>
<body>
<nav class="top"><a href="/docs/">Documentation</a> · <a href="/">Bastion</a></nav>
<main>
{{.Body}}
</main>
</body>
</html>
`))

var indexTmpl = template.Must(template.New("index").Parse(`<h1>Bastion documentation</h1>
<ul class="doc-list">
{{- range .}}
<li><a href="{{.Name}}">{{.Title}}</a> <code>{{.Name}}.md</code></li>
{{- end}}
</ul>
`))

func pageHTML(title string, body template.HTML) ([]byte, error) {
	var b bytes.Buffer
	err := pageTmpl.Execute(&b, struct {
		Title string
		Body  template.HTML
	}{title, body})
	return b.Bytes(), err
}

const stylesheet = `:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e; --link: #0969da; --code-bg: #f3f4f6; --border: #d1d9e0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --link: #58a6ff; --code-bg: #1f2429; --border: #3d444d; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 16px/1.6 system-ui, -apple-system, "Segoe UI", sans-serif; }
nav.top { padding: .75rem 1rem; border-bottom: 1px solid var(--border); font-size: .9rem; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem 1rem 4rem; overflow-wrap: anywhere; }
a { color: var(--link); }
h1, h2, h3 { line-height: 1.25; margin-top: 1.8em; }
h1 { margin-top: .6em; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; background: var(--code-bg); border-radius: 4px; }
code { padding: .1em .3em; }
pre { padding: .8rem 1rem; overflow-x: auto; }
pre code { padding: 0; background: none; }
table { border-collapse: collapse; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--border); padding: .3rem .6rem; text-align: left; vertical-align: top; }
blockquote { margin: 0; padding-left: 1rem; border-left: 3px solid var(--border); color: var(--muted); }
.doc-list code { color: var(--muted); background: none; }
`
