//go:build embedui

package ui

import "embed"

// all: keeps files whose names start with "_" or ".", which Vite may emit for shared chunks.
//
//go:embed all:dist
var embedded embed.FS

const embeddedRoot = "dist"
