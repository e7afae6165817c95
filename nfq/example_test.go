//go:build linux

package nfq_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// dropSyns is a Handler written outside tcpchaos, without its pipeline:
// it drops every SYN without ACK and lets the rest through.
type dropSyns struct{}

func (dropSyns) Handle(seg *statetrack.Segment, _ time.Time) rules.Verdict {
	v := rules.Verdict{Decision: rules.Decision{Action: rules.Accept, Rule: -1}}
	if seg.Flags&(statetrack.SYN|statetrack.ACK) == statetrack.SYN {
		v.Action = rules.Drop
	}
	return v
}

func (dropSyns) Deliver(*rules.Verdict, time.Time) {}
func (dropSyns) Quieted(uint64, time.Time)         {}
func (dropSyns) Declined(uint64)                   {}
func (dropSyns) Expire(time.Time)                  {}

// An outside program binds a queue with its own Handler and runs it until
// interrupted (the iptables rules that feed queue 100 are nfq.Install's).
func ExampleOpen() {
	q, err := nfq.Open(nfq.Options{Queue: 100}, dropSyns{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := q.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.Stats().Dropped, "SYNs dropped")
}
