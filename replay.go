package autorefresh

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// bodyRecorder wraps a request body that has no GetBody. It keeps the first
// limit bytes read through it so that the request can be sent again.
//
// The first attempt's transport reads and closes the recorder, but the
// caller's body stays open until the Transport decides: release closes it
// (now, or when the first attempt is done with it), replay hands the bytes
// read so far, followed by the rest of the caller's body, to a second
// attempt.
type bodyRecorder struct {
	rc    io.ReadCloser
	limit int64
	done  chan struct{} // closed when the first attempt closed the body or read all of it

	mu       sync.Mutex // guards the fields below
	buf      []byte
	n        int64 // bytes read from rc
	closed   bool  // the first attempt called Close
	finished bool  // done is closed
	released bool  // rc is to be closed once the first attempt closes the body
	taken    bool  // rc belongs to the replay
	rcClosed bool
}

func newBodyRecorder(rc io.ReadCloser, limit int64) *bodyRecorder {
	return &bodyRecorder{rc: rc, limit: limit, done: make(chan struct{})}
}

func (b *bodyRecorder) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.taken || b.closed {
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	if b.n <= b.limit {
		b.buf = append(b.buf, p[:n]...)
	} else {
		b.buf = nil
	}
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

// Close is called by the first attempt's transport.
func (b *bodyRecorder) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.finish()
	if b.released {
		return b.closeRC()
	}
	return nil
}

func (b *bodyRecorder) finish() {
	if !b.finished {
		b.finished = true
		close(b.done)
	}
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
}

// replay waits until the first attempt is done with the body and returns
// a body holding the same bytes.
func (b *bodyRecorder) replay(ctx context.Context) (io.ReadCloser, error) {
	select {
	case <-b.done:
	case <-ctx.Done():
		b.release()
		return nil, ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n > b.limit {
		b.closeRC()
		return nil, fmt.Errorf("%w: its body was larger than %d bytes and has no GetBody (raise Transport.MaxReplayBody or set GetBody)",
			ErrBodyNotReplayable, b.limit)
	}
	b.taken = true
	return &replayReader{Reader: io.MultiReader(bytes.NewReader(b.buf), b.rc), rc: b.rc}, nil
}

type replayReader struct {
	io.Reader
	rc io.Closer
}

func (r *replayReader) Close() error { return r.rc.Close() }
