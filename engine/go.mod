module github.com/bastion-backup/bastion/engine

go 1.26.8

replace github.com/bastion-backup/bastion/storage => ../storage

require (
	github.com/bastion-backup/bastion/storage v0.0.0-00010101000000-000000000000
	github.com/gobwas/glob v1.1.0
	github.com/rs/zerolog v1.35.1
)

require (
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/mattn/go-sqlite3 v1.14.53 // indirect
	golang.org/x/sys v0.29.0 // indirect
)
