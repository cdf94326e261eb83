package redisstore_test

import "syscall"

// childProcAttr makes the kernel end the test's redis-server when the test
// binary dies without stopping it (a test timeout, a crash).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
