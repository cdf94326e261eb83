package redisstore

// ErrCorrupt lets the external tests check for errCorrupt.
var ErrCorrupt = errCorrupt
