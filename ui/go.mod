module github.com/bastion-backup/bastion/ui

go 1.26.8
