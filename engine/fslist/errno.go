package fslist

import "syscall"

var syscallENOTDIR error = syscall.ENOTDIR
