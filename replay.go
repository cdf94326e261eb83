package autorefresh

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
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
	rc    io.ReadCloser
	limit int64
	done  chan struct{} // closed when the first attempt is done with the body

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
}

// bufPool holds the buffers of bodies that were not replayed, up to
// maxPooled bytes each.
var bufPool sync.Pool

const maxPooled = 64 << 10

// newBodyRecorder records up to limit bytes of rc, whose length is size
// when it is known (positive).
func newBodyRecorder(rc io.ReadCloser, limit, size int64) *bodyRecorder {
	b := &bodyRecorder{rc: rc, limit: limit, done: make(chan struct{})}
	if p, ok := bufPool.Get().(*[]byte); ok {
		b.buf = (*p)[:0]
	}
	if size > 0 && size <= limit && int64(cap(b.buf)) < size {
		b.buf = make([]byte, 0, size)
	}
	return b
}

// recycle puts the buffer back in the pool once nothing can use it: the
// replay was given up and the first attempt is done with the body.
func (b *bodyRecorder) recycle() {
	if b.released && b.finished && b.buf != nil {
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
	case b.released: // no replay: nothing to keep
	case b.n <= b.limit:
		b.buf = append(b.buf, p[:n]...)
	default:
		b.buf = nil
	}
	if err == io.EOF {
		b.eof = true
	}
	b.checkDone()
	return n, err
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
	if b.n > b.limit {
		b.closeRC()
		return nil, fmt.Errorf("%w: the first attempt read more than %d bytes of its body, which has no GetBody (raise Transport.MaxReplayBody or set GetBody)",
			ErrBodyNotReplayable, b.limit)
	}
	b.taken = true
	rest := io.Reader(b.rc)
	if b.eof {
		rest = eofReader{}
	}
	return &replayReader{Reader: io.MultiReader(bytes.NewReader(b.buf), rest), rc: b.rc}, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type replayReader struct {
	io.Reader
	rc io.Closer
}

func (r *replayReader) Close() error { return r.rc.Close() }
