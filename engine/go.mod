module github.com/bastion-backup/bastion/engine

go 1.26.8

replace github.com/bastion-backup/bastion/storage => ../storage

require (
	filippo.io/age v1.3.2
	github.com/adhocore/gronx v1.20.4
	github.com/bastion-backup/bastion/storage v0.0.0-00010101000000-000000000000
	github.com/gobwas/glob v1.1.0
	github.com/google/uuid v1.6.0
	github.com/klauspost/compress v1.20.4
	github.com/mattn/go-sqlite3 v1.14.53
	github.com/robfig/cron/v3 v3.0.1
	github.com/rs/zerolog v1.35.1
	github.com/wneessen/go-mail v0.8.1
	github.com/zeebo/blake3 v0.2.4
	golang.org/x/crypto v0.55.0
	golang.org/x/net v0.57.0
	golang.org/x/sys v0.47.0
	golang.org/x/time v0.16.0
)

require (
	filippo.io/hpke v0.4.0 // indirect
	github.com/klauspost/cpuid/v2 v2.0.12 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	golang.org/x/text v0.41.0 // indirect
)
