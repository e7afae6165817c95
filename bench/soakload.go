package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The soak's traffic (role soak-client): short connections at a steady
// rate and a few long connections that stay open for a while and exchange
// a byte now and then, replaced by new ones as they close.

// soakInFlight bounds the short connections open at once: beyond it a
// tick is skipped (and counted) rather than piling up connections.
const soakInFlight = 256

// longExchangeEvery is how often a long connection exchanges a byte.
const longExchangeEvery = time.Second

// longLife is how long a long connection stays open: 30 s, or a third of
// a shorter soak, so that every soak sees long connections close and open
// while it reloads.
func longLife(d time.Duration) time.Duration { return min(30*time.Second, d/3) }

// soakResult is what the soak's client saw.
type soakResult struct {
	// Short counts the short connections, Long the long ones (a long
	// connection is ok when every exchange and its close went through).
	Short connsResult `json:"short"`
	Long  connsResult `json:"long"`
	// Exchanges counts the long connections' exchanges.
	Exchanges int64 `json:"exchanges"`
	// Skipped counts the ticks that found soakInFlight short connections
	// still open.
	Skipped int64 `json:"skipped"`
}

// soakClient runs the soak's traffic to addr for d: rate short
// connections a second (echo), and long connections at once, each open
// for longLife(d) (the first ones staggered: slot i closes after
// (i+1)/long of it), then replaced, the last ones closed at d.
func soakClient(addr string, d time.Duration, rate, long int) (soakResult, error) {
	if rate < 1 || long < 0 {
		return soakResult{}, fmt.Errorf("soak client: rate %d (want at least 1), long connections %d (want at least 0)", rate, long)
	}
	end := time.Now().Add(d)
	var (
		res        soakResult
		mu         sync.Mutex // guards res.Short and res.Long
		exchanges  atomic.Int64
		wg         sync.WaitGroup
		inFlight   = make(chan struct{}, soakInFlight)
		life       = longLife(d)
		countShort = func(err error) { mu.Lock(); res.Short.add(err); mu.Unlock() }
		countLong  = func(err error) { mu.Lock(); res.Long.add(err); mu.Unlock() }
	)
	for slot := range long {
		open := life * time.Duration(slot+1) / time.Duration(long)
		wg.Go(func() {
			for ; time.Now().Before(end); open = life {
				until := time.Now().Add(open)
				if until.After(end) {
					until = end
				}
				n, err := longConn(addr, until)
				exchanges.Add(n)
				countLong(err)
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for now := range tick.C {
		if !now.Before(end) {
			break
		}
		select {
		case inFlight <- struct{}{}:
			wg.Go(func() {
				countShort(echo(addr))
				<-inFlight
			})
		default:
			res.Skipped++
		}
	}
	tick.Stop()
	wg.Wait()
	res.Exchanges = exchanges.Load()
	return res, nil
}

// longConn opens a long connection to addr, exchanges a byte every
// longExchangeEvery until until, and closes it first (the client keeps
// the TIME_WAIT). It returns the exchanges made.
func longConn(addr string, until time.Time) (int64, error) {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	b := []byte{longRequest}
	var n int64
	for {
		if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
			return n, err
		}
		if _, err := conn.Write(b); err != nil {
			return n, err
		}
		if _, err := io.ReadFull(conn, b); err != nil {
			return n, err
		}
		n++
		wait := time.Until(until)
		if wait <= 0 {
			return n, nil
		}
		time.Sleep(min(wait, longExchangeEvery))
		if !time.Now().Before(until) {
			return n, nil
		}
	}
}
