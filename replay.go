package autorefresh

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// bodyRecorder wraps a request body that has no GetBody. It keeps the first
// limit bytes read through it so that the request can be sent again.
//
// The first attempt's transport reads and closes the recorder, perhaps
// from two goroutines at once (HTTP/2 closes a body that a writer is still
// reading), but the caller's body stays open until the Transport decides:
// release closes it (now, or when the first attempt is done with it),
// replay waits until the first attempt is done with it, then hands the
// bytes read so far, followed by the rest of the caller's body, to a
// second attempt.
type bodyRecorder struct {
	rc     io.ReadCloser
	limit  int64
	done   chan struct{} // closed when the first attempt is done with the body
	budget *replayBudget

	mu       sync.Mutex // guards the fields below
	buf      []byte
	n        int64 // bytes read from rc
	reading  int   // Reads under way
	closed   bool  // the first attempt called Close
	eof      bool  // rc is drained
	finished bool  // done is closed
	released bool  // rc is to be closed once the first attempt closes the body
	taken    bool  // rc belongs to the replay
	rcClosed bool
	dropped  bool  // recording stopped: the budget of the Transport ran out
	held     int64 // bytes of buf counted in the budget
}

// replayBudget bounds what the replay buffers of a Transport hold together.
type replayBudget struct {
	used *atomic.Int64
	max  int64 // <= 0: no bound
}

// take counts n more bytes, and reports whether they fit.
func (r *replayBudget) take(n int64) bool {
	if r.max <= 0 {
		return true
	}
	if r.used.Add(n) > r.max {
		r.used.Add(-n)
		return false
	}
	return true
}

func (r *replayBudget) give(n int64) {
	if r.max > 0 && n != 0 {
		r.used.Add(-n)
	}
}

// replays hands out the bodies of the attempts at one request: the
// caller's body first, then the same bytes again for each retry, from
// GetBody or from a recorder of the attempt before.
type replays struct {
	t   *Transport
	req *http.Request
	rec *bodyRecorder // records the last attempt's body; nil when not needed or off
}

// newReplays returns the replays of req and the body of its first attempt.
func (t *Transport) newReplays(req *http.Request) (replays, io.ReadCloser) {
	r := replays{t: t, req: req}
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil || t.MaxReplayBody < 0 {
		return r, req.Body
	}
	r.rec = t.recorder(req.Body, req.ContentLength)
	return r, r.rec
}

// recorder returns a recorder of rc, of length size when positive, within
// t's limits.
func (t *Transport) recorder(rc io.ReadCloser, size int64) *bodyRecorder {
	limit := cmp.Or(t.MaxReplayBody, DefaultMaxReplayBody)
	budget := &replayBudget{used: &t.replayMemory, max: cmp.Or(t.MaxReplayMemory, DefaultMaxReplayMemory)}
	return newBodyRecorder(rc, limit, size, budget)
}

// next returns the body of the next attempt: the same bytes as the last
// one's, once that attempt is done with its body. It is recorded in turn,
// in case another attempt follows.
func (r *replays) next(ctx context.Context) (io.ReadCloser, error) {
	switch {
	case r.req.Body == nil || r.req.Body == http.NoBody:
		return r.req.Body, nil
	case r.req.GetBody != nil:
		b, err := r.req.GetBody()
		if err != nil {
			return nil, &wrapped{"replay body", err}
		}
		return b, nil
	case r.rec == nil:
		return nil, fmt.Errorf("%w: it has no GetBody and body buffering is off", ErrBodyNotReplayable)
	}
	body, err := r.rec.replay(ctx, r.t.refreshTimeout())
	r.rec = nil
	if err != nil {
		return nil, err
	}
	r.rec = r.t.recorder(body, r.req.ContentLength)
	return r.rec, nil
}

// done gives up what is left to replay: the last body is closed as soon as
// its attempt is done with it.
func (r *replays) done() { r.rec.release() }

// bufPool holds the buffers of bodies that were not replayed, up to
// maxPooled bytes each.
var bufPool sync.Pool

const maxPooled = 64 << 10

// newBodyRecorder records up to limit bytes of rc, whose length is size
// when it is known (positive), within budget.
func newBodyRecorder(rc io.ReadCloser, limit, size int64, budget *replayBudget) *bodyRecorder {
	b := &bodyRecorder{rc: rc, limit: limit, done: make(chan struct{}), budget: budget}
	if p, ok := bufPool.Get().(*[]byte); ok {
		b.buf = (*p)[:0]
	}
	if size > 0 && size <= limit && int64(cap(b.buf)) < size && budget.fits(size) {
		b.buf = make([]byte, 0, size)
	}
	return b
}

// fits reports whether n more bytes would fit now.
func (r *replayBudget) fits(n int64) bool { return r.max <= 0 || r.used.Load()+n <= r.max }

// recycle puts the buffer back in the pool once nothing can use it: the
// replay was given up and the first attempt is done with the body.
func (b *bodyRecorder) recycle() {
	if b.released && b.finished && b.buf != nil {
		b.budget.give(b.held)
		b.held = 0
		if cap(b.buf) <= maxPooled {
			buf := b.buf[:0]
			bufPool.Put(&buf)
		}
		b.buf = nil
	}
}

func (b *bodyRecorder) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.taken || b.closed || b.eof {
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.reading++
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading--
	b.n += int64(n)
	switch {
	case b.released || b.dropped: // no replay: nothing to keep
	case b.n <= b.limit && b.budget.take(int64(n)):
		b.buf = append(b.buf, p[:n]...)
		b.held += int64(n)
	default:
		b.drop(b.n <= b.limit)
	}
	if err == io.EOF {
		b.eof = true
	}
	b.checkDone()
	return n, err
}

// drop stops recording, giving the bytes held back to the budget;
// overBudget says why.
func (b *bodyRecorder) drop(overBudget bool) {
	b.budget.give(b.held)
	b.held, b.buf = 0, nil
	b.dropped = overBudget
	if !overBudget {
		b.n = max(b.n, b.limit+1)
	}
}

// Close is called by the first attempt's transport.
func (b *bodyRecorder) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.checkDone()
	if b.released {
		// Also unblocks a Read under way, as the transport wants.
		return b.closeRC()
	}
	return nil
}

// checkDone closes done once the first attempt has finished with the
// body: it closed it or read all of it, and no Read is under way.
func (b *bodyRecorder) checkDone() {
	if !b.finished && (b.closed || b.eof) && b.reading == 0 {
		b.finished = true
		close(b.done)
	}
	b.recycle()
}

func (b *bodyRecorder) closeRC() error {
	if b.rcClosed {
		return nil
	}
	b.rcClosed = true
	return b.rc.Close()
}

// release gives up the replay: the caller's body is closed as soon as the
// first attempt is done with it. It is a no-op on a nil recorder.
func (b *bodyRecorder) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released = true
	if b.closed || b.finished {
		b.closeRC()
	}
	b.recycle()
}

// replay waits, at most wait, until the first attempt is done with the
// body and returns a body holding the same bytes.
func (b *bodyRecorder) replay(ctx context.Context, wait time.Duration) (io.ReadCloser, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-b.done:
	case <-ctx.Done():
		b.release()
		return nil, ctx.Err()
	case <-timer.C:
		b.release()
		return nil, fmt.Errorf("%w: the first attempt neither read all of its body nor closed it within %v", ErrBodyNotReplayable, wait)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.dropped:
		b.closeRC()
		return nil, fmt.Errorf("%w: its body, which has no GetBody, was not kept: the replay buffers of the Transport hold Transport.MaxReplayMemory bytes already",
			ErrBodyNotReplayable)
	case b.n > b.limit:
		b.closeRC()
		return nil, fmt.Errorf("%w: the first attempt read more than %d bytes of its body, which has no GetBody (raise Transport.MaxReplayBody or set GetBody)",
			ErrBodyNotReplayable, b.limit)
	}
	b.taken = true
	rest := io.Reader(b.rc)
	if b.eof {
		rest = eofReader{}
	}
	held := b.held
	b.held = 0
	return &replayReader{Reader: io.MultiReader(bytes.NewReader(b.buf), rest), rc: b.rc, budget: b.budget, held: held}, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// replayReader is the body of a replay: the recorded bytes, then the rest
// of the caller's body. Closing it gives the recorded bytes back to the
// budget.
type replayReader struct {
	io.Reader
	rc     io.Closer
	budget *replayBudget
	once   sync.Once
	held   int64
}

func (r *replayReader) Close() error {
	r.once.Do(func() { r.budget.give(r.held) })
	return r.rc.Close()
}
