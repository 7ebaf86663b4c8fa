module github.com/bastion-backup/bastion/hub

go 1.26.8

require (
	github.com/bastion-backup/bastion/agent v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/engine v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/httpapi v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/storage v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/ui v0.0.0-00010101000000-000000000000
	github.com/rs/zerolog v1.35.1
	golang.org/x/term v0.45.0
)

require (
	github.com/coder/websocket v1.8.14 // indirect
	github.com/go-chi/chi/v5 v5.5.0 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/mattn/go-sqlite3 v1.14.53 // indirect
	golang.org/x/crypto v0.55.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/bastion-backup/bastion/storage => ../storage

replace github.com/bastion-backup/bastion/engine => ../engine

replace github.com/bastion-backup/bastion/httpapi => ../httpapi

replace github.com/bastion-backup/bastion/agent => ../agent

replace github.com/bastion-backup/bastion/ui => ../ui
