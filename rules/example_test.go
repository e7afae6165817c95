package rules_test

import (
	"fmt"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Rules are compiled once into a Set; an Engine per worker decides, packet
// by packet, on what the tracker observed. The first matching rule decides.
func Example() {
	client := statetrack.Client
	set := rules.Compile([]rules.Rule{
		{Name: "lose-first-syn", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, From: &client, Nth: 1},
			Action: rules.Action{Type: rules.Drop}, Probability: 1},
		{Name: "slow-syn-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.SynAck}},
			Action: rules.Action{Type: rules.Delay, Delay: 300 * time.Millisecond}, Probability: 1},
	})
	engine := rules.NewEngine(set, 1)
	for _, o := range []statetrack.Observation{
		{From: statetrack.Client, Kind: statetrack.Syn, Nth: 1},
		{From: statetrack.Client, Kind: statetrack.Syn, Nth: 2, Retransmission: true},
		{From: statetrack.Server, Kind: statetrack.SynAck, Nth: 1},
	} {
		d := engine.Decide(&o)
		name := "no rule"
		if d.Rule >= 0 {
			name = set.Names()[d.Rule]
		}
		fmt.Printf("%s #%d: %s (%s) hold %s\n", o.Kind, o.Nth, d.Action, name, d.Hold)
	}
	// Output:
	// syn #1: drop (lose-first-syn) hold 0s
	// syn #2: accept (no rule) hold 0s
	// syn-ack #1: delay (slow-syn-ack) hold 300ms
}
