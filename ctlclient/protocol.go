// Package ctlclient drives a running `tcpchaos run` through its control
// socket, for test suites written in Go (the `tcpchaos ctl` command uses
// it too). It also defines the protocol's messages.
//
// The protocol is HTTP/1.1 over the unix socket that `run --control PATH`
// listens on (mode 0600: only its owner, and root, may connect), with
// JSON bodies, so that a suite in any language can speak it (for example
// `curl --unix-socket PATH http://tcpchaos/v1/status`):
//
//	GET  /v1/status                     Status
//	GET  /v1/conns[?state=S&port=P&limit=N] []Conn (S: either endpoint's state; P: the server port; N: at most N, the most recently active)
//	GET  /v1/rules                      []Rule
//	POST /v1/rules/NAME/enable          Rule (takes effect for the next packet)
//	POST /v1/rules/NAME/disable         Rule
//	POST /v1/reload                     Reload (read the config file again)
//	POST /v1/config  {"file": "PATH"}   Reload (replace the config by another file)
//	GET  /v1/timeline/CONN              Timeline (CONN: a conn id, or the client's ADDR:PORT)
//
// A request that fails answers a status other than 200 with an Error body:
// 400 for a bad request, 404 for an unknown rule or connection, 409 for a
// refused reload (the old config stays in force).
package ctlclient

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// DefaultDir holds the control sockets of runs started without --control.
const DefaultDir = "/run/tcpchaos"

// DefaultPath is the control socket of a run without --control: named
// after its first queue number, and after the network namespace given by
// --netns (queue numbers are per namespace): DefaultDir/queue-N.sock, or
// DefaultDir/NETNS-queue-N.sock, NETNS the namespace's name (for a path
// outside /run/netns, the path with its slashes made dashes:
// proc-42-ns-net-queue-N.sock).
func DefaultPath(queue uint16, netns string) string {
	name := fmt.Sprintf("queue-%d.sock", queue)
	if netns != "" {
		ns := strings.Trim(strings.ReplaceAll(strings.TrimPrefix(netns, "/run/netns/"), "/", "-"), "-")
		name = ns + "-" + name
	}
	return filepath.Join(DefaultDir, name)
}

// Status describes the running instance.
type Status struct {
	// PID is the process ID of `tcpchaos run`.
	PID int `json:"pid"`
	// Started is when the interception started; Uptime how long ago, in
	// seconds.
	Started time.Time `json:"started"`
	Uptime  float64   `json:"uptime_seconds"`
	// Config is the config file in force; Loaded when it was last loaded
	// (at start or by a reload that succeeded).
	Config string    `json:"config"`
	Loaded time.Time `json:"loaded"`
	// Reloads counts the reloads that succeeded, Refused those refused.
	Reloads uint64 `json:"reloads"`
	Refused uint64 `json:"reloads_refused"`
	// LastError is the last refused reload's reason, with its time; empty
	// when none was refused since the last one that succeeded.
	LastError   string     `json:"last_reload_error,omitempty"`
	LastErrorAt *time.Time `json:"last_reload_error_at,omitempty"`
	// Rules is how many rules are in force. Quiet reports whether the
	// data phase of established connections bypasses the queue;
	// QuietHandshake whether a handshake's third ACK does too, QuietClose
	// whether what passes between a connection's first FIN and its second
	// does (README "What is queued").
	Rules          int  `json:"rules"`
	Quiet          bool `json:"quiet"`
	QuietHandshake bool `json:"quiet_handshake"`
	QuietClose     bool `json:"quiet_close"`
	// Tracked is how many connections the tracker holds.
	Tracked int `json:"tracked"`
	// Packets counts the packets seen by kind, Actions by action taken.
	Packets map[string]uint64 `json:"packets"`
	Actions map[string]uint64 `json:"actions"`
	// Queues are the NFQUEUE queues' counters, in queue number order.
	Queues []Queue `json:"queues"`
	// RulePackets is how many packets reached the NFQUEUE rules (both
	// address families); QueueFullUnseen how many of them found their
	// queue full and passed unseen without an id (fail-open), which no
	// queue counter shows. QueueFullError says why both are unknown, if
	// they are.
	RulePackets     uint64 `json:"rule_packets"`
	QueueFullUnseen uint64 `json:"queue_full_unseen"`
	QueueFullError  string `json:"queue_full_error,omitempty"`
}

// Queue is one NFQUEUE queue's counters.
type Queue struct {
	Number     uint16 `json:"number"`
	Received   uint64 `json:"received"`
	Accepted   uint64 `json:"accepted"`
	Dropped    uint64 `json:"dropped"`
	Delayed    uint64 `json:"delayed"`
	Held       uint64 `json:"held"`
	Duplicated uint64 `json:"duplicated"`
	// KernelQueued is how many packets the kernel queued (its id
	// sequence); KernelUnseen how many of them it let through unseen
	// (fail-open when the queue was full). KernelError says why the
	// kernel's counters could not be read, if they could not.
	KernelQueued uint64 `json:"kernel_queued"`
	KernelUnseen uint64 `json:"kernel_unseen"`
	KernelError  string `json:"kernel_error,omitempty"`
}

// Conn is one tracked connection.
type Conn struct {
	// ID is the connection's conn_id, as in its events.
	ID uint64 `json:"id"`
	// Client and Server are the endpoints ("ADDR:PORT", IPv6 bracketed).
	Client string `json:"client"`
	Server string `json:"server"`
	// ClientState and ServerState are the endpoints' states.
	ClientState string `json:"client_state"`
	ServerState string `json:"server_state"`
	// First is the time of the connection's first event recorded (zero
	// when none is; the kept events may start later), Age the seconds
	// since then; Last its last activity.
	First time.Time `json:"first"`
	Age   float64   `json:"age_seconds"`
	Last  time.Time `json:"last_activity"`
	// Midstream: picked up after its handshake. Quiet: its packets
	// without SYN, FIN and RST bypass the queue (its data phase, or after
	// a quiet handshake or during a quiet close).
	Midstream bool `json:"midstream"`
	Quiet     bool `json:"quiet"`
	// Packets counts its packets by kind, Faults the packets a rule
	// dropped, delayed or duplicated (both from its events).
	Packets map[string]uint64 `json:"packets"`
	Faults  uint64            `json:"faults"`
}

// Rule is one rule in force, in order.
type Rule struct {
	Name string `json:"name"`
	// Match and Action describe the rule as `tcpchaos validate` does.
	Match  string `json:"match"`
	Action string `json:"action"`
	// Probability is the chance per matching packet that it acts.
	Probability float64 `json:"probability"`
	// Hits counts the packets the rule acted on (since it was first
	// loaded under its name).
	Hits uint64 `json:"hits"`
	// Limit is the rule's limit (0: none); LimitLeft how many packets it
	// may still act on (absent without a limit).
	Limit     uint64  `json:"limit"`
	LimitLeft *uint64 `json:"limit_left,omitempty"`
	// Enabled is false for a rule disabled through the control socket.
	Enabled bool `json:"enabled"`
}

// Reload is what a reload applied.
type Reload struct {
	// Config is the config file now in force, Loaded when it was loaded.
	Config string    `json:"config"`
	Loaded time.Time `json:"loaded"`
	// Changed lists what changed: "rules", "intercept" (ports or hosts);
	// empty when the file changed nothing.
	Changed []string `json:"changed"`
	// Quiet reports whether the data phase bypasses the queue from now on,
	// QuietHandshake and QuietClose whether the quiet handshake and the
	// quiet close do (as in Status).
	Quiet          bool `json:"quiet"`
	QuietHandshake bool `json:"quiet_handshake"`
	QuietClose     bool `json:"quiet_close"`
}

// SetConfig is the body of POST /v1/config.
type SetConfig struct {
	File string `json:"file"`
}

// Timeline is one connection's recent history.
type Timeline struct {
	Conn Conn `json:"conn"`
	// Ladder is the ladder diagram of the events, as `tcpchaos timeline`
	// draws it (ASCII).
	Ladder string `json:"ladder"`
	// Events are the connection's last events (a bounded ring), oldest
	// first, each an object as in the --events file.
	Events []json.RawMessage `json:"events"`
}

// Error is the body of a failed request.
type Error struct {
	Message string `json:"error"`
	// Status is the HTTP status (not in the body).
	Status int `json:"-"`
}

func (e *Error) Error() string { return e.Message }
