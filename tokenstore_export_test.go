package autorefresh

// CrossProcessLock reports, for external tests, whether FileStore.Lock
// excludes other processes on this system.
const CrossProcessLock = crossProcessLock
