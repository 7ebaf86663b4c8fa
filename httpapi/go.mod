module github.com/bastion-backup/bastion/httpapi

go 1.26.8

require (
	github.com/bastion-backup/bastion/storage v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/engine v0.0.0-00010101000000-000000000000
	github.com/bastion-backup/bastion/agent v0.0.0-00010101000000-000000000000
)

replace github.com/bastion-backup/bastion/storage => ../storage
replace github.com/bastion-backup/bastion/engine => ../engine
replace github.com/bastion-backup/bastion/agent => ../agent
