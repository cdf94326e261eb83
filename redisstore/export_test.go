package redisstore

// RecordVersion returns the version of a stored value as Load reads it (0
// for nil, a missing key), for the tests of package redisstore_test.
func RecordVersion(value []byte) uint64 {
	if value == nil {
		return 0
	}
	_, v, _, _ := decodeRecord(value)
	return v
}
