package embedded

import "syscall"

// childAttrs makes the kernel kill the child when iotpipe dies (a kill
// -9 too): otherwise the child exits only once it sees its stdin close
// and ClickHouse shuts down, holding the data directory's lock for a
// while, so that an iotpipe restarted at once found it taken.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
