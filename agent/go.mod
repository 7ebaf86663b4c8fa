module github.com/bastion-backup/bastion/agent

go 1.26.8

require (
	github.com/bastion-backup/bastion/engine v0.0.0-00010101000000-000000000000
	github.com/coder/websocket v1.8.14
	github.com/rs/zerolog v1.35.1
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/bastion-backup/bastion/engine => ../engine

replace github.com/bastion-backup/bastion/storage => ../storage
