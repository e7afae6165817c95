//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// demoStory is the demo's scenario as its events tell it: each field is the
// first event of its sort, nil when not seen.
type demoStory struct {
	syn1, syn2 *events.Event // the client's first SYN and its retransmission
	firstFin   *events.Event // the first FIN of the close
	serverFins []*events.Event
	// finalAck1 is the client's final ACK; finalAck2 its re-ACK of the
	// server's retransmitted FIN.
	finalAck1, finalAck2 *events.Event
}

// findStory picks the events of the demo's story out of evs.
func findStory(evs []events.Event) demoStory {
	var s demoStory
	first := func(slot **events.Event, e *events.Event) {
		if *slot == nil {
			*slot = e
		}
	}
	for i := range evs {
		e := &evs[i]
		client := e.From == statetrack.Client
		switch {
		case client && e.Kind == statetrack.Syn && e.Nth == 1:
			first(&s.syn1, e)
		case client && e.Kind == statetrack.Syn && e.Nth == 2:
			first(&s.syn2, e)
		case e.Kind == statetrack.Fin:
			first(&s.firstFin, e)
			if e.From == statetrack.Server {
				s.serverFins = append(s.serverFins, e)
			}
		case client && e.Kind == statetrack.FinalAck && e.Nth == 1:
			first(&s.finalAck1, e)
		case client && e.Kind == statetrack.FinalAck && e.Nth == 2:
			first(&s.finalAck2, e)
		}
	}
	return s
}

// complete reports whether the story has reached its end: the client's
// re-ACK from TIME_WAIT got through.
func (s demoStory) complete() bool {
	return s.finalAck2 != nil && s.finalAck2.Rule == ""
}

// dropped reports whether a rule dropped the packet of e.
func dropped(e *events.Event) bool { return e != nil && e.Rule != "" && e.Action == rules.Drop }

// explain tells the story in a few paragraphs, each derived from the
// events; the error lists the steps that were not seen.
func (s demoStory) explain() ([]string, error) {
	var told, missing []string
	if dropped(s.syn1) && s.syn2 != nil {
		same := "with the same sequence number"
		if s.syn2.Seq != s.syn1.Seq {
			same = "with another sequence number"
		}
		told = append(told, fmt.Sprintf("The client's first SYN was dropped by %s. Hearing nothing back, "+
			"the client's kernel sent the SYN again %s %.2f s later (Linux's initial retransmission "+
			"timeout is 1 s), and connect() returned only then.",
			s.syn1.Rule, same, s.syn2.Time.Sub(s.syn1.Time).Seconds()))
	} else {
		missing = append(missing, "the client's first SYN dropped, then retransmitted")
	}
	if s.firstFin != nil && s.firstFin.From == statetrack.Client && len(s.serverFins) > 0 {
		told = append(told, fmt.Sprintf("The client closed first (%s close, %s); the server answered with "+
			"its own FIN (%s close) and waited in %s for the last ACK.",
			s.firstFin.Closer, s.firstFin.ClientState, s.serverFins[0].Closer, s.serverFins[0].ServerState))
	} else {
		missing = append(missing, "the client's FIN, then the server's")
	}
	if dropped(s.finalAck1) && len(s.serverFins) >= 2 {
		told = append(told, fmt.Sprintf("The client's final ACK was dropped by %s, so the server never "+
			"learned that its FIN had arrived: it sent the FIN again %.2f s later (%d FINs from the server in all).",
			s.finalAck1.Rule, s.serverFins[1].Time.Sub(s.serverFins[0].Time).Seconds(), len(s.serverFins)))
	} else {
		missing = append(missing, "the final ACK dropped and the server's FIN retransmitted")
	}
	if s.complete() {
		told = append(told, fmt.Sprintf("The client, in %s, answered the retransmitted FIN with another "+
			"final ACK (final-ack #%d), which got through: the server went %s. That is what TIME_WAIT is "+
			"for: had the client forgotten the connection, it would have answered that FIN with an RST.",
			s.finalAck2.ClientState, s.finalAck2.Nth, s.finalAck2.ServerState))
	} else {
		missing = append(missing, "the client's re-ACK from TIME_WAIT")
	}
	if len(missing) > 0 {
		return told, fmt.Errorf("the demo scenario did not play out: not seen: %s", strings.Join(missing, "; "))
	}
	return told, nil
}

// writeWrapped writes text wrapped at width characters, its first line
// after bullet and the others indented to match.
func writeWrapped(w io.Writer, text, bullet string, width int) {
	indent := strings.Repeat(" ", utf8.RuneCountInString(bullet))
	line, words := bullet, 0
	for _, word := range strings.Fields(text) {
		if words > 0 && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			fmt.Fprintln(w, line)
			line, words = indent, 0
		}
		if words > 0 {
			line += " "
		}
		line += word
		words++
	}
	fmt.Fprintln(w, line)
}
