package config

import (
	"errors"
	"math"
	"math/bits"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// FuzzDecode feeds arbitrary YAML to Decode: it must never panic, every
// error must be a list of *FieldError, and a Config it accepts must hold
// the invariants the rest of tcpchaos relies on.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(designExample))
	f.Add([]byte(`intercept: {mode: local, ports: "80,443", hosts: [fd00::/8], queue: 65000, queues: 535}`))
	f.Add([]byte(`rules: [{match: {packet: [fin], closer: active, from: server, state: FIN_WAIT_1, src: 198.18.0.0/15}, action: {drop: true}}]`))
	f.Add([]byte(`rules: [{match: {retransmission: true, nth: 3, dst: "fd00::1"}, action: {delay: 1s, jitter: 1s}, probability: 0.5, limit: 2}]`))
	f.Add([]byte(`tracker: {msl: 1ns, max-connections: 1, idle-timeout: 1h}`))
	f.Add([]byte(`rules: [{name: a, action: accept}, {name: a, action: drop}]`))
	f.Add([]byte(`{seed: "7", rules: [{action: {duplicate: "3", after: 0}}]}`))
	f.Add([]byte(`{rules: [{name: r, action: drop}], expect: [{name: a, follows: {rule: r, packet: fin, from: server, closer: active, nth: 2, within: 2s}}, {name: b, follows: {rule: r, packet: state, state: TIME_WAIT, within: 1s}}]}`))
	f.Add([]byte(`{rules: [{action: drop}], expect: [{name: c, never: {state: LAST_ACK, longer-than: 5s}}, {name: d, reaches: {state: TIME_WAIT, from: client, connections: all}}, {name: e, hits: {rule: rule-1, min: 1, max: 1}}, {name: f, exit: nonzero}]}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		var tr map[string]any
		if yaml.Unmarshal(src, &tr) != nil {
			return
		}
		c, err := Decode(tr)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if line == "" {
					t.Fatalf("empty line in error %q", err)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v holds no *FieldError", err)
			}
			return
		}
		if msg := insane(c); msg != "" {
			t.Fatalf("Decode accepted %q giving %+v: %s", src, c, msg)
		}
	})
}

// insane checks a decoded Config independently of the decoder and returns
// what is wrong with it, or "".
func insane(c Config) string {
	in := c.Intercept
	switch {
	case in.Mode != nfq.Forward && in.Mode != nfq.Local:
		return "bad mode"
	case in.Queues == 0 || uint32(in.Queue)+uint32(in.Queues)-1 > math.MaxUint16:
		return "queues out of range"
	case in.QueueLength > 1<<20:
		return "queue length out of range"
	case c.Tracker.MSL <= 0 || c.Tracker.IdleTimeout <= 0 || c.Tracker.MaxConnections <= 0:
		return "tracker limit not positive"
	case uint64(c.Tracker.MaxConnections)<<bits.Len(uint(in.Queues-1)) > 1<<32:
		return "more connections than the queues' trackers have conn_ids for"
	case len(c.Tracker.ServerPorts) != len(in.Ports):
		return "tracker server ports differ from intercepted ports"
	}
	for _, p := range in.Ports {
		if p == 0 {
			return "port 0"
		}
	}
	for _, p := range in.Hosts {
		if !p.IsValid() || p != p.Masked() {
			return "bad host prefix"
		}
	}
	names := map[string]bool{}
	for _, r := range c.Rules {
		if r.Name == "" || names[r.Name] {
			return "empty or repeated rule name " + r.Name
		}
		names[r.Name] = true
		if !(r.Probability >= 0 && r.Probability <= 1) {
			return "probability outside [0,1]"
		}
		if msg := insaneAction(r.Action); msg != "" {
			return r.Name + ": " + msg
		}
		m := r.Match
		for _, k := range m.Packets {
			if k.String() == "" || strings.HasPrefix(k.String(), "Kind(") {
				return "bad kind"
			}
		}
		if m.Closer != statetrack.NoCloser && len(m.Packets) > 0 && !slices.Contains(m.Packets, statetrack.Fin) {
			return "closer without fin"
		}
		for _, s := range m.States {
			if strings.HasPrefix(s.String(), "State(") {
				return "bad state"
			}
		}
		for _, p := range m.Ports {
			if p == 0 {
				return "match port 0"
			}
		}
		for _, p := range append(m.Src[:len(m.Src):len(m.Src)], m.Dst...) {
			if !p.IsValid() {
				return "bad match prefix"
			}
		}
	}
	return insaneExpect(c, names)
}

// insaneExpect checks the decoded expectations against the rules' names.
func insaneExpect(c Config, rules map[string]bool) string {
	names := map[string]bool{}
	exits := 0
	for _, x := range c.Expect {
		if x.Name == "" || names[x.Name] {
			return "empty or repeated expectation name " + x.Name
		}
		names[x.Name] = true
		switch k := x.Check.(type) {
		case *expect.Follows:
			if !rules[k.Rule] || k.Within <= 0 || k.Packet != 0 && k.State != statetrack.Closed {
				return x.Name + ": bad follows"
			}
		case *expect.Never:
			if k.LongerThan < 0 {
				return x.Name + ": negative bound"
			}
		case *expect.Reaches:
		case *expect.Hits:
			if !rules[k.Rule] || k.Min == nil && k.Max == nil || k.Min != nil && k.Max != nil && *k.Min > *k.Max {
				return x.Name + ": bad hits"
			}
		case *expect.Exit:
			exits++
			if k.Status < 0 || k.Status > 255 || k.Nonzero && k.Status != 0 || exits > 1 {
				return x.Name + ": bad exit"
			}
		default:
			return x.Name + ": no check"
		}
	}
	return ""
}

func insaneAction(a rules.Action) string {
	switch a.Type {
	case rules.Accept, rules.Drop:
		if a != (rules.Action{Type: a.Type}) {
			return "parameters on accept or drop"
		}
	case rules.Delay:
		if a.Delay <= 0 || a.Jitter < 0 || a.Jitter > a.Delay || a.Copies != 0 || a.After != 0 {
			return "bad delay"
		}
	case rules.Duplicate:
		if a.Copies < 1 || a.Copies > rules.MaxCopies || a.After < 0 || a.Delay != 0 || a.Jitter != 0 {
			return "bad duplicate"
		}
	default:
		return "unknown action type"
	}
	return ""
}
