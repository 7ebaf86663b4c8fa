//go:build !embedui

package ui

import "embed"

//go:embed placeholder
var embedded embed.FS

const embeddedRoot = "placeholder"
