package autorefresh

// CheckGoroutines lets the external tests use checkGoroutines.
var CheckGoroutines = checkGoroutines
