//go:build linux

package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// storyEvents is the demo's scenario as the router reports it, trimmed to
// the packets the story is about. Client ISN 1000, server ISN 5000.
func storyEvents() []events.Event {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const (
		client, server = statetrack.Client, statetrack.Server
		S, A, F        = statetrack.SYN, statetrack.ACK, statetrack.FIN
	)
	ev := func(ms int, from statetrack.Side, kind statetrack.Kind, nth uint32, flags statetrack.Flags, seq, ack uint32, cs, ss statetrack.State) events.Event {
		return events.Event{Time: at(ms), Client: netip.MustParseAddrPort("198.18.1.2:40000"), Server: netip.MustParseAddrPort("198.19.2.2:8080"),
			ConnID: 1, From: from, Kind: kind, Nth: nth, Flags: flags, Seq: seq, Ack: ack, ClientState: cs, ServerState: ss}
	}
	evs := []events.Event{
		ev(0, client, statetrack.Syn, 1, S, 1000, 0, statetrack.SynSent, statetrack.Listen),
		ev(1020, client, statetrack.Syn, 2, S, 1000, 0, statetrack.SynSent, statetrack.SynRcvd),
		ev(1021, server, statetrack.SynAck, 1, S|A, 5000, 1001, statetrack.Established, statetrack.SynRcvd),
		ev(1030, client, statetrack.Fin, 1, F|A, 1001, 5001, statetrack.FinWait1, statetrack.CloseWait),
		ev(1031, server, statetrack.Fin, 1, F|A, 5001, 1002, statetrack.TimeWait, statetrack.LastAck),
		ev(1032, client, statetrack.FinalAck, 1, A, 1002, 5002, statetrack.TimeWait, statetrack.LastAck),
		ev(1240, server, statetrack.Fin, 2, F|A, 5001, 1002, statetrack.TimeWait, statetrack.LastAck),
		ev(1241, client, statetrack.FinalAck, 2, A, 1002, 5002, statetrack.TimeWait, statetrack.Closed),
	}
	evs[0].Action, evs[0].Rule = rules.Drop, "lose-first-syn"
	evs[1].Retransmission = true
	evs[3].Closer, evs[4].Closer, evs[6].Closer = statetrack.Active, statetrack.Passive, statetrack.Passive
	evs[5].Action, evs[5].Rule = rules.Drop, "lose-final-ack-once"
	return evs
}

func TestStoryExplain(t *testing.T) {
	paragraphs, err := findStory(storyEvents()).explain()
	if err != nil {
		t.Fatalf("explain of the full story: %v", err)
	}
	text := strings.Join(paragraphs, "\n")
	for _, want := range []string{
		"dropped by lose-first-syn", "with the same sequence number 1.02 s later",
		"waited in LAST_ACK",
		"dropped by lose-final-ack-once", "again 0.21 s later (2 FINs from the server in all)",
		"The client, in TIME_WAIT", "final-ack #2", "the server went CLOSED",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("story lacks %q:\n%s", want, text)
		}
	}

	evs := storyEvents()
	evs[5].Action, evs[5].Rule = rules.Accept, "" // the final ACK got through: no retransmitted FIN, no re-ACK
	evs = evs[:6]
	s := findStory(evs)
	if s.complete() {
		t.Error("story without the re-ACK reported complete")
	}
	if _, err := s.explain(); err == nil || !strings.Contains(err.Error(), "final ACK dropped") || !strings.Contains(err.Error(), "re-ACK from TIME_WAIT") {
		t.Errorf("explain of a story without the lost final ACK: error %v, want both missing steps named", err)
	}
}

func TestCollectorWaitFor(t *testing.T) {
	c := newCollector()
	evs := storyEvents()
	done := make(chan error, 1)
	go func() {
		done <- c.waitFor(context.Background(), func(evs []events.Event) bool { return findStory(evs).complete() })
	}()
	for i := range evs {
		c.Emit(evs[i])
	}
	if err := <-done; err != nil {
		t.Fatalf("waitFor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newCollector().waitFor(ctx, func([]events.Event) bool { return false }); err != context.Canceled {
		t.Errorf("waitFor on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestWriteWrapped(t *testing.T) {
	var b strings.Builder
	writeWrapped(&b, "one two three four five six", "  • ", 14)
	want := "  • one two\n    three four\n    five six\n"
	if b.String() != want {
		t.Errorf("writeWrapped = %q, want %q", b.String(), want)
	}
}
