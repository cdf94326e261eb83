package autorefresh

// CheckGoroutines lets the external tests use checkGoroutines.
var CheckGoroutines = checkGoroutines

// CrossProcessLock reports, for external tests, whether FileStore.Lock
// excludes other processes on this system.
const CrossProcessLock = crossProcessLock

// CannotRun lets the external tests use cannotRun.
var CannotRun = cannotRun
