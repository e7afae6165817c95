package main

import (
	"context"
	"slices"
	"sync"

	"github.com/tcpchaos/tcpchaos/internal/events"
)

// collector is an events.Writer that keeps every event in memory and
// wakes the one caller of waitFor at each.
type collector struct {
	mu      sync.Mutex
	evs     []events.Event
	changed chan struct{} // capacity 1: "something changed since you looked"
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

// Emit keeps e.
func (c *collector) Emit(e events.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Flush does nothing: the events are kept as they come.
func (c *collector) Flush() error { return nil }

// Events returns a copy of the events so far, in emission order.
func (c *collector) Events() []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.evs)
}

// waitFor returns nil as soon as done holds for the events so far, or
// ctx's error when ctx ends first.
func (c *collector) waitFor(ctx context.Context, done func([]events.Event) bool) error {
	for !done(c.Events()) {
		select {
		case <-c.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
