module github.com/bastion-backup/bastion/engine

go 1.26.8

replace github.com/bastion-backup/bastion/storage => ../storage

require github.com/gobwas/glob v1.1.0
