//go:build linux

package nfq

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/execute"
)

// recvBufSize holds the largest message the kernel sends: a whole 64 KiB
// packet and its attributes.
const recvBufSize = 1 << 17

// read is the reader goroutine: it blocks until the socket holds a
// message, handles every message the socket holds (up to maxBurst), then
// has the burst's verdicts written, until the queue is closing; then it
// drains the socket.
func (q *Queue) read() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, recvBufSize)
	var m packetMsg
	for !q.closing.Load() {
		n, e := q.poll(buf)
		if e == unix.EAGAIN {
			n, e = recvFrom(q.fd, buf, 0)
		}
		if e != 0 {
			if !q.readError(e) {
				return
			}
			continue
		}
		drained := false
		for i := 1; ; i++ {
			q.core.messages(buf[:n], &m, time.Now())
			if i == maxBurst {
				break // not one read more: its message would be lost
			}
			if n, e = recvFrom(q.fd, buf, unix.MSG_DONTWAIT); e != 0 {
				drained = e == unix.EAGAIN
				if !drained {
					q.readError(e)
				}
				break
			}
		}
		q.core.endBurst(drained)
	}
	q.drain(buf, &m)
}

// maxDrain bounds how many messages drain reads.
const maxDrain = 1 << 16

// drain gives a verdict to every message the socket still holds once the
// queue is closing: the kernel would drop them, unread, at unbind. The
// caller removes the rules that feed the queue first, so there is an end
// to them; maxDrain bounds it anyway.
func (q *Queue) drain(buf []byte, m *packetMsg) {
	for range maxDrain {
		n, e := recvFrom(q.fd, buf, unix.MSG_DONTWAIT)
		if e != 0 {
			break
		}
		q.core.messages(buf[:n], m, time.Now())
	}
	q.core.endBurst(false)
}

// poll reads the socket without blocking until a message comes or
// opts.Poll has passed (EAGAIN).
func (q *Queue) poll(buf []byte) (int, unix.Errno) {
	if q.opts.Poll < 0 {
		return 0, unix.EAGAIN
	}
	var deadline time.Time
	for {
		n, e := recvFrom(q.fd, buf, unix.MSG_DONTWAIT)
		if e != unix.EAGAIN {
			return n, e
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(q.opts.Poll)
		} else if now.After(deadline) {
			return 0, e
		}
	}
}

// readError counts a failed read and reports whether the reader goes on:
// a timeout or an interruption is no failure, a closed socket ends it.
func (q *Queue) readError(e unix.Errno) bool {
	switch e {
	case unix.EAGAIN, unix.EINTR:
		return true
	case unix.EBADF:
		return false
	}
	if q.closing.Load() {
		return false
	}
	if n := q.core.c.readErr.Add(1); execute.LogWorthy(n) {
		q.log.Error("read from queue", "errors", n, "err", e)
	}
	return true
}
