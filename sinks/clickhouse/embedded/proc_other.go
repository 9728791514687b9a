//go:build !linux

package embedded

import "syscall"

// childAttrs: the child ends when its stdin closes (see serve.go).
func childAttrs() *syscall.SysProcAttr { return nil }
