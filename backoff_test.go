package autorefresh

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestBackoffSurvivesClockStepBack: the back-off after failed refreshes is
// at most half a second (README, "Failures"), but it is kept as a wall-clock
// instant (retryAt, in Unix nanoseconds of Transport.clock). When the wall
// clock steps back after the failures (an NTP step, a VM restored from a
// snapshot, a user fixing the time zone by hand), every refused request
// fails fast with ErrBackoff "for another 1h0m0.3s" for as long as the
// step, although the endpoint is back. Expiries rightly use the wall
// clock; a back-off is an elapsed time and must not.
func TestBackoffSurvivesClockStepBack(t *testing.T) {
	srv := newProtoServer(t)
	var offset atomic.Int64 // added to the real time
	tr, _ := srv.transport(srv.stale())
	setClock(tr, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	c := NewClient(nil, tr)

	srv.refreshStatus.Store(503)
	for range 2 { // the second failure in a row arms the back-off
		if resp, err := c.Get(srv.URL + "/api/x"); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d with a refused token and the endpoint down; want an error", resp.StatusCode)
		}
	}
	srv.refreshStatus.Store(0)
	offset.Store(int64(-time.Hour)) // the wall clock steps back an hour

	awaitSuccess(t, c, srv.URL+"/api/x", 5*time.Second)
}
