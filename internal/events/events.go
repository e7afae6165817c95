// Package events defines tcpchaos's event records (one JSON object per line,
// the stable interface of DESIGN.md "Events") and the sinks that write them.
package events

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// StateKind is the Kind of an event that reports a state change without a
// packet being sent: a held packet released, a duplicate arriving, TIME_WAIT
// expiry, idle expiry, eviction, replacement by a new incarnation.
const StateKind = "state"

// Event is one line of the event stream. Field names and spellings are a
// stable interface: add fields, never rename them.
type Event struct {
	// Time is when the event took effect (under replay: the packet's capture
	// time, plus any delay).
	Time time.Time `json:"time"`
	// Conn is "client:port->server:port" as the client sees it; IPv6
	// addresses are bracketed.
	Conn string `json:"conn"`
	// ConnID identifies the connection's incarnation within one run.
	ConnID uint64 `json:"conn_id"`
	// From is the sender, "client" or "server"; empty for expiry events.
	From string `json:"from,omitempty"`
	// Kind is the packet kind ("syn", "final-ack", ...) or "state".
	Kind string `json:"kind"`
	// Closer is "active" or "passive" for a fin.
	Closer string `json:"closer,omitempty"`
	// Nth counts packets of this kind from this sender (1 = original).
	Nth uint32 `json:"nth,omitempty"`
	// Retransmission reports that the segment's sequence space was seen before.
	Retransmission bool   `json:"retransmission,omitempty"`
	Seq            uint32 `json:"seq"`
	Ack            uint32 `json:"ack"`
	// Flags are spelled as tcpdump does ("S", "S.", "F.", "R", ".").
	Flags string `json:"flags,omitempty"`
	// Len is the TCP payload length.
	Len uint32 `json:"len"`
	// ClientState and ServerState are both endpoints' states after the event.
	ClientState string `json:"client_state"`
	ServerState string `json:"server_state"`
	// Rule and Action are set when a rule acted on the packet.
	Rule   string `json:"rule,omitempty"`
	Action string `json:"action,omitempty"`
	// Delay is how long a delayed packet is held; After and Copies describe
	// a duplication.
	Delay  string `json:"delay,omitempty"`
	After  string `json:"after,omitempty"`
	Copies uint32 `json:"copies,omitempty"`
	// Reason says why a "state" event happened: released, duplicate,
	// time-wait-expired, idle-expired, evicted, replaced.
	Reason string `json:"reason,omitempty"`
	// Midstream marks the packets of a connection picked up after its
	// handshake (its history before is inferred); NewIncarnation a SYN that
	// replaced a connection on the same tuple.
	Midstream      bool `json:"midstream,omitempty"`
	NewIncarnation bool `json:"new_incarnation,omitempty"`
}

// Sink receives events. Implementations are safe for concurrent use.
type Sink interface {
	Emit(e *Event)
}

// JSONLines writes each event as one JSON object per line.
type JSONLines struct {
	mu  sync.Mutex
	enc *json.Encoder
	err error
}

// NewJSONLines returns a sink writing JSON lines to w.
func NewJSONLines(w io.Writer) *JSONLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keep "->" in conn readable
	return &JSONLines{enc: enc}
}

// Emit writes e. The first write error is kept and reported by Err; later
// events are dropped.
func (j *JSONLines) Emit(e *Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = j.enc.Encode(e)
	}
}

// Err returns the first write error, if any.
func (j *JSONLines) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Faults writes one readable line per fault (events with an Action) and
// ignores the rest: what `run` prints on stderr without --events.
type Faults struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFaults returns a sink writing fault lines to w.
func NewFaults(w io.Writer) *Faults { return &Faults{w: w} }

// Emit writes a line for e if a rule acted on it.
func (f *Faults) Emit(e *Event) {
	if e.Action == "" {
		return
	}
	detail := ""
	switch {
	case e.Delay != "":
		detail = " by " + e.Delay
	case e.Copies > 0:
		detail = fmt.Sprintf(" ×%d after %s", e.Copies, e.After)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.w, "%s %-9s%s %s %s #%d [%s] seq=%d ack=%d  rule=%s  (client %s, server %s)\n",
		e.Time.Format("15:04:05.000000"), e.Action, detail, e.From, e.Kind, e.Nth, e.Flags, e.Seq, e.Ack,
		e.Rule, e.ClientState, e.ServerState)
}

// Tee sends every event to each of its sinks in order.
type Tee []Sink

// Emit passes e to every sink.
func (t Tee) Emit(e *Event) {
	for _, s := range t {
		s.Emit(e)
	}
}
