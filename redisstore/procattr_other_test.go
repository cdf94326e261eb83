//go:build !linux

package redisstore_test

import "syscall"

// childProcAttr returns nil: only Linux can end a child when its parent
// dies, so elsewhere a test binary that dies leaves its redis-server behind.
func childProcAttr() *syscall.SysProcAttr { return nil }
