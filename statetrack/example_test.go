package statetrack_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// A handshake and a close seen from the middle: each packet is observed when
// it leaves its sender and delivered when it reaches its receiver (at once
// here: nothing is dropped or held).
func Example() {
	tr := statetrack.New(statetrack.Config{})
	client := netip.MustParseAddrPort("198.18.1.2:40000")
	server := netip.MustParseAddrPort("198.19.2.2:8080")
	now := time.Unix(0, 0)
	send := func(fromClient bool, flags statetrack.Flags, seq, ack uint32) {
		seg := statetrack.Segment{Src: client, Dst: server, Flags: flags}
		if !fromClient {
			seg.Src, seg.Dst = server, client
		}
		seg.Seq, seg.Ack = seqnum.Value(seq), seqnum.Value(ack)
		now = now.Add(time.Millisecond)
		o := tr.Observe(&seg, now)
		after, _ := tr.Deliver(&o, now)
		fmt.Printf("%-6s %-13s client %-11s server %s\n", o.From, o.Kind, after[statetrack.Client], after[statetrack.Server])
	}
	send(true, statetrack.SYN, 100, 0)
	send(false, statetrack.SYN|statetrack.ACK, 500, 101)
	send(true, statetrack.ACK, 101, 501)
	send(true, statetrack.FIN|statetrack.ACK, 101, 501)
	send(false, statetrack.FIN|statetrack.ACK, 501, 102)
	send(true, statetrack.ACK, 102, 502)
	// Output:
	// client syn           client SYN_SENT    server SYN_RCVD
	// server syn-ack       client ESTABLISHED server SYN_RCVD
	// client handshake-ack client ESTABLISHED server ESTABLISHED
	// client fin           client FIN_WAIT_1  server CLOSE_WAIT
	// server fin           client TIME_WAIT   server LAST_ACK
	// client final-ack     client TIME_WAIT   server CLOSED
}
