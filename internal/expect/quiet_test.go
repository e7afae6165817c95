package expect

import (
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestQuietPhases(t *testing.T) {
	all := pipeline.QuietPhases{Handshake: true, Close: true, PastNth: true}
	for _, c := range []struct {
		name  string
		check Check
		want  pipeline.QuietPhases
	}{
		{"exit", &Exit{}, all},
		{"hits", &Hits{Rule: "r"}, all},
		{"follows syn", &Follows{Rule: "r", Packet: statetrack.Syn}, all},
		{"follows final-ack", &Follows{Rule: "r", Packet: statetrack.FinalAck}, all},
		{"follows handshake-ack", &Follows{Rule: "r", Packet: statetrack.HandshakeAck}, pipeline.QuietPhases{Close: true, PastNth: true}},
		{"follows fin-ack", &Follows{Rule: "r", Packet: statetrack.FinAck}, pipeline.QuietPhases{Handshake: true, PastNth: true}},
		{"follows ack", &Follows{Rule: "r", Packet: statetrack.Ack}, pipeline.QuietPhases{Handshake: true}},
		{"follows data", &Follows{Rule: "r", Packet: statetrack.Data}, pipeline.QuietPhases{Handshake: true}},
		{"follows keepalive", &Follows{Rule: "r", Packet: statetrack.Keepalive}, pipeline.QuietPhases{Handshake: true}},
		{"follows state ESTABLISHED", &Follows{Rule: "r", State: statetrack.Established}, all},
		{"follows state SYN_RCVD", &Follows{Rule: "r", State: statetrack.SynRcvd}, pipeline.QuietPhases{Close: true, PastNth: true}},
		{"follows state FIN_WAIT_2", &Follows{Rule: "r", State: statetrack.FinWait2}, pipeline.QuietPhases{Handshake: true, PastNth: true}},
		{"never SYN_RCVD", &Never{State: statetrack.SynRcvd}, pipeline.QuietPhases{Close: true, PastNth: true}},
		{"never CLOSE_WAIT", &Never{State: statetrack.CloseWait}, pipeline.QuietPhases{Handshake: true, PastNth: true}},
		{"never TIME_WAIT", &Never{State: statetrack.TimeWait}, all},
		{"reaches FIN_WAIT_1", &Reaches{State: statetrack.FinWait1}, pipeline.QuietPhases{Handshake: true, PastNth: true}},
		{"reaches CLOSED", &Reaches{State: statetrack.Closed}, all},
	} {
		if got := QuietPhases([]Expectation{{Name: c.name, Check: c.check}}); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	if got := QuietPhases([]Expectation{{Check: &Never{State: statetrack.SynRcvd}}, {Check: &Reaches{State: statetrack.FinWait2}}}); got != (pipeline.QuietPhases{PastNth: true}) {
		t.Errorf("both named: %+v, want neither phase", got)
	}
	if got := QuietPhases(nil); got != all {
		t.Errorf("no expectations: %+v, want both", got)
	}
}
