package netlabtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Serve serves ln's connections with handle, each on a goroutine of its own
// with a deadline of timeout, and returns the count of connections
// accepted so far. A handler's error fails the test. The test's cleanup
// closes ln and waits for the handlers.
func Serve(t testing.TB, ln net.Listener, timeout time.Duration, handle func(net.Conn) error) *atomic.Int64 {
	var accepted atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
					t.Errorf("server: set deadline: %v", err)
					return
				}
				if err := handle(c); err != nil {
					t.Errorf("server: %v", err)
				}
			})
		}
	})
	return &accepted
}
