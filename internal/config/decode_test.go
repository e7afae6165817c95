package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// tree parses YAML into the generic tree viper.AllSettings gives: maps with
// string keys, lowercased as viper lowercases them.
func tree(t testing.TB, src string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(src), &m); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	return lowerKeys(m).(map[string]any)
}

func lowerKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[strings.ToLower(k)] = lowerKeys(v)
		}
		return out
	case []any:
		for i := range x {
			x[i] = lowerKeys(x[i])
		}
	}
	return v
}

func decodeYAML(t *testing.T, src string) Config {
	t.Helper()
	c, err := Decode(tree(t, src))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return c
}

func TestDecodeEmptyIsDefault(t *testing.T) {
	for _, tr := range []map[string]any{nil, {}} {
		c, err := Decode(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Decode(%v) = %+v, want %+v", tr, c, Default())
		}
	}
	d := Default()
	if d.Intercept.Mode != nfq.Forward || d.Intercept.Queue != 100 || d.Intercept.Queues != 1 || d.Seed != 1 ||
		d.Tracker.MSL != 30*time.Second || d.Tracker.MaxConnections != 1_000_000 || d.Tracker.IdleTimeout != 10*time.Minute ||
		d.Tracker.QuietTimeout != 5*24*time.Hour {
		t.Errorf("Default() = %+v", d)
	}
}

// designExample is the example config, testdata/design.yaml, in full.
var designExample = func() string {
	b, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestDecodeDesignExample(t *testing.T) {
	c := decodeYAML(t, designExample)
	want := Default()
	want.Intercept.Ports = []uint16{8080}
	want.Tracker.ServerPorts = []uint16{8080}
	want.Rules = []rules.Rule{
		{Name: "lose-first-syn", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1}, Action: rules.Action{Type: rules.Drop}, Probability: 1},
		{Name: "lose-final-ack-once", Match: rules.Match{Packets: []statetrack.Kind{statetrack.FinalAck}, Nth: 1, Ports: []uint16{8080}}, Action: rules.Action{Type: rules.Drop}, Probability: 1},
		{Name: "slow-syn-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.SynAck}}, Action: rules.Action{Type: rules.Delay, Delay: 300 * time.Millisecond, Jitter: 20 * time.Millisecond}, Probability: 1},
		{Name: "stale-syn", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1}, Action: rules.Action{Type: rules.Duplicate, Copies: 1, After: 3 * time.Second}, Probability: 1, Limit: 10},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestDecodeEveryField(t *testing.T) {
	c := decodeYAML(t, `
Intercept:
  Mode: LOCAL
  ports: "8080, 9090"
  hosts: [198.18.0.0/15, "fd00::/8", 198.18.7.9, 10.1.2.3/8]
  queue: "200"
  queues: 4.0
  queue-length: 256
tracker: {msl: 1s, max-connections: "5", idle-timeout: 2m, quiet-timeout: 48h}
seed: 18446744073709551615
rules:
  - match:
      packet: [fin]
      closer: passive
      from: server
      nth: 2
      retransmission: "true"
      state: [close-wait, ESTAB]
      port: 5432
      src: 198.18.1.0/24
      dst: [fd00:1::/64, 198.18.2.2]
      idle: 90s
    action: {drop: true}
    probability: "0.25"
    limit: 3
  - name: 42
    action: ACCEPT
  - action: {duplicate: 2}
  - match: {retransmission: false, from: client}
    action: {delay: 1s}
  - action: {reset: Both, window: outside}
  - action: {reset: client}
  - action: {blackhole: To-Client, for: 2s}
  - action: {blackhole: both}
`)
	server, client, yes, no := statetrack.Server, statetrack.Client, true, false
	want := Config{
		Intercept: nfq.Intercept{
			Mode:  nfq.Local,
			Ports: []uint16{8080, 9090},
			Hosts: []netip.Prefix{
				netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00::/8"),
				netip.MustParsePrefix("198.18.7.9/32"), netip.MustParsePrefix("10.0.0.0/8"),
			},
			Queue: 200, Queues: 4, QueueLength: 256,
		},
		Tracker: statetrack.Config{MSL: time.Second, MaxConnections: 5, IdleTimeout: 2 * time.Minute, QuietTimeout: 48 * time.Hour, ServerPorts: []uint16{8080, 9090}},
		Seed:    18446744073709551615,
		Rules: []rules.Rule{
			{
				Name: "rule-1",
				Match: rules.Match{
					Packets: []statetrack.Kind{statetrack.Fin}, Closer: statetrack.Passive, From: &server, Nth: 2,
					Retransmission: &yes, States: []statetrack.State{statetrack.CloseWait, statetrack.Established},
					Ports: []uint16{5432}, Src: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")},
					Dst:  []netip.Prefix{netip.MustParsePrefix("fd00:1::/64"), netip.MustParsePrefix("198.18.2.2/32")},
					Idle: 90 * time.Second,
				},
				Action: rules.Action{Type: rules.Drop}, Probability: 0.25, Limit: 3,
			},
			{Name: "42", Action: rules.Action{Type: rules.Accept}, Probability: 1},
			{Name: "rule-3", Action: rules.Action{Type: rules.Duplicate, Copies: 2}, Probability: 1},
			{Name: "rule-4", Match: rules.Match{Retransmission: &no, From: &client}, Action: rules.Action{Type: rules.Delay, Delay: time.Second}, Probability: 1},
			{Name: "rule-5", Action: rules.Action{Type: rules.Reset, Reset: rules.Both, OutsideWindow: true}, Probability: 1},
			{Name: "rule-6", Action: rules.Action{Type: rules.Reset, Reset: rules.ToClient}, Probability: 1},
			{Name: "rule-7", Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.ToClient, For: 2 * time.Second}, Probability: 1},
			{Name: "rule-8", Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.Both}, Probability: 1},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// JSON numbers arrive as float64, TOML's as int64, flags' as strings.
func TestDecodeNumberForms(t *testing.T) {
	for _, v := range []any{8080, int64(8080), uint64(8080), float64(8080), "8080", " 8080 ", []any{"8080"}, []string{"8080"}, []int{8080}} {
		c, err := Decode(map[string]any{"intercept": map[string]any{"ports": v}})
		if err != nil {
			t.Errorf("ports %#v: %v", v, err)
			continue
		}
		if !reflect.DeepEqual(c.Intercept.Ports, []uint16{8080}) {
			t.Errorf("ports %#v: got %v", v, c.Intercept.Ports)
		}
	}
	for _, v := range []any{0.5, float32(0.5), "0.5", "5e-1"} {
		c, err := Decode(map[string]any{"rules": []any{map[string]any{"action": "drop", "probability": v}}})
		if err != nil || c.Rules[0].Probability != 0.5 {
			t.Errorf("probability %#v: %v, %v", v, c.Rules, err)
		}
	}
	for _, v := range []any{1, int64(1), "1", "1.0", 1.0} {
		c, err := Decode(map[string]any{"rules": []any{map[string]any{"action": "drop", "probability": v}}})
		if err != nil || c.Rules[0].Probability != 1 {
			t.Errorf("probability %#v: %v, %v", v, c.Rules, err)
		}
	}
	for _, v := range []any{"90s", 90 * time.Second, " 1m30s "} {
		c, err := Decode(map[string]any{"tracker": map[string]any{"msl": v}})
		if err != nil || c.Tracker.MSL != 90*time.Second {
			t.Errorf("msl %#v: %v, %v", v, c.Tracker.MSL, err)
		}
	}
	c, err := Decode(map[string]any{"rules": []any{map[string]any{"action": map[string]any{"duplicate": 1, "after": 0}}}})
	if err != nil || c.Rules[0].Action.After != 0 {
		t.Errorf("after 0: %v, %v", c.Rules, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"unknown kind", `rules: [{match: {packet: syn}, action: drop}, {action: drop}, {match: {packet: synack}, action: drop}]`,
			[]string{`rules[2].match.packet: unknown packet kind "synack" (want one of syn, syn-ack, handshake-ack, fin, fin-ack, final-ack, rst, keepalive, keepalive-ack, data, ack)`}},
		{"unknown kind in list", `rules: [{match: {packet: [syn, fn]}, action: drop}]`,
			[]string{`rules[0].match.packet[1]: unknown packet kind "fn"`}},
		{"negative msl", `tracker: {msl: -1s}`, []string{`tracker.msl: negative duration "-1s"`}},
		{"zero msl", `tracker: {msl: 0s}`, []string{`tracker.msl: must be positive`}},
		{"msl without unit", `tracker: {msl: 30}`, []string{`tracker.msl: duration 30 needs a unit, e.g. "30s"`}},
		{"bad idle-timeout", `tracker: {idle-timeout: soon}`, []string{`tracker.idle-timeout: bad duration "soon"`}},
		{"zero quiet-timeout", `tracker: {quiet-timeout: 0s}`, []string{`tracker.quiet-timeout: must be positive`}},
		{"max-connections", `tracker: {max-connections: 0}`, []string{`tracker.max-connections: 0 is out of range 1-2147483647`}},
		{"probability above", `rules: [{action: drop, probability: 1.5}]`, []string{`rules[0].probability: 1.5 is outside [0,1]`}},
		{"probability below", `rules: [{action: drop, probability: -0.1}]`, []string{`rules[0].probability: -0.1 is outside [0,1]`}},
		{"probability nan", `rules: [{action: drop, probability: .nan}]`, []string{`rules[0].probability: NaN is not a finite number`}},
		{"probability word", `rules: [{action: drop, probability: half}]`, []string{`rules[0].probability: "half" is not a number`}},
		{"bad CIDR", `intercept: {hosts: [198.18.0.0/15, 10.0.0.300/8]}`, []string{`intercept.hosts[1]: bad CIDR "10.0.0.300/8"`}},
		{"mapped CIDR", `intercept: {hosts: "::ffff:198.18.0.0/112"}`, []string{`intercept.hosts: IPv4-mapped prefix`}},
		{"zone", `rules: [{match: {src: "fe80::1%eth0"}, action: drop}]`, []string{`rules[0].match.src: bad CIDR "fe80::1%eth0"`}},
		{"bad dst", `rules: [{match: {dst: [1]}, action: drop}]`, []string{`rules[0].match.dst[0]: want a string, got the number 1`}},
		{"port range", `rules: [{match: {port: 70000}, action: drop}]`, []string{`rules[0].match.port: 70000 is out of range 1-65535`}},
		{"port zero", `intercept: {ports: [0]}`, []string{`intercept.ports[0]: 0 is out of range 1-65535`}},
		{"port fraction", `intercept: {ports: [80.5]}`, []string{`intercept.ports[0]: 80.5 is not an integer`}},
		{"port word", `intercept: {ports: http}`, []string{`intercept.ports: "http" is not an integer`}},
		{"port repeated", `intercept: {ports: [80, 443, 80]}`, []string{`intercept.ports[2]: 80 repeats intercept.ports[0]`}},
		{"host repeated", `intercept: {hosts: [10.0.0.0/8, 10.1.0.0/8]}`, []string{`intercept.hosts[1]: 10.0.0.0/8 repeats intercept.hosts[0]`}},
		{"kind repeated", `rules: [{match: {packet: "syn,syn"}, action: drop}]`, []string{`rules[0].match.packet[1]: syn repeats rules[0].match.packet[0]`}},
		{"unknown key nested", `rules: [{match: {pakcet: syn}, action: drop}]`, []string{`rules[0].match.pakcet: unknown key (did you mean "packet"?)`}},
		{"unknown key top", `rule: []`, []string{`rule: unknown key (did you mean "rules"?)`}},
		{"unknown key far", `color: blue`, []string{`color: unknown key (want one of intercept, tracker, seed, rules, expect)`}},
		{"unknown key tracker", `tracker: {max_connections: 5}`, []string{`tracker.max_connections: unknown key (did you mean "max-connections"?)`}},
		{"unknown key intercept", `intercept: {queus: 2}`, []string{`intercept.queus: unknown key (did you mean "queue"?)`}},
		{"unknown key action", `rules: [{action: {delay: 1s, jiter: 1ms}}]`, []string{`rules[0].action.jiter: unknown key (did you mean "jitter"?)`}},
		{"unknown key rule", `rules: [{action: drop, probabilty: 0.5}]`, []string{`rules[0].probabilty: unknown key (did you mean "probability"?)`}},
		{"closer without fin", `rules: [{match: {packet: [syn, ack], closer: active}, action: drop}]`,
			[]string{`rules[0].match.closer: only fin packets have a closer`}},
		{"bad closer", `rules: [{match: {closer: first}, action: drop}]`, []string{`rules[0].match.closer: unknown closer "first"`}},
		{"bad from", `rules: [{match: {from: both}, action: drop}]`, []string{`rules[0].match.from: unknown side "both" (want client or server)`}},
		{"nth zero", `rules: [{match: {nth: 0}, action: drop}]`, []string{`rules[0].match.nth: 0 is out of range 1-4294967295`}},
		{"retransmission word", `rules: [{match: {retransmission: maybe}, action: drop}]`, []string{`rules[0].match.retransmission: want true or false, got "maybe"`}},
		{"bad state", `rules: [{match: {state: [established, half-open]}, action: drop}]`, []string{`rules[0].match.state[1]: unknown state "half-open"`}},
		{"match not map", `rules: [{match: syn, action: drop}]`, []string{`rules[0].match: want a map, got "syn"`}},
		{"match list is map", `rules: [{match: {port: {a: 1}}, action: drop}]`, []string{`rules[0].match.port: want a list or a single value, got a map`}},
		{"limit negative", `rules: [{action: drop, limit: -1}]`, []string{`rules[0].limit: -1 is negative`}},
		{"seed negative", `seed: -5`, []string{`seed: -5 is negative`}},
		{"seed too large", `seed: "99999999999999999999"`, []string{`seed: 99999999999999999999 is too large`}},
		{"missing action", `rules: [{name: x}]`, []string{`rules[0].action: missing`}},
		{"null rule", `rules: [~]`, []string{`rules[0]: empty rule`}},
		{"rule not map", `rules: [drop]`, []string{`rules[0]: want a map, got "drop"`}},
		{"rules not list", `rules: {action: drop}`, []string{`rules: want a list or a single value, got a map`}},
		{"unknown action", `rules: [{action: reject}]`, []string{`rules[0].action: unknown action "reject"`}},
		{"reset bare", `rules: [{action: reset}]`, []string{`rules[0].action: reset needs the endpoints, e.g. {reset: both}`}},
		{"reset endpoint", `rules: [{action: {reset: peer}}]`,
			[]string{`rules[0].action.reset: unknown reset "peer" (want client, server or both)`}},
		{"reset not a word", `rules: [{action: {reset: 2}}]`, []string{`rules[0].action.reset: want a string, got the number 2`}},
		{"reset window", `rules: [{action: {reset: both, window: inside}}]`,
			[]string{`rules[0].action.window: unknown window "inside" (want exact or outside)`}},
		{"window without reset", `rules: [{action: {drop: true, window: outside}}]`,
			[]string{`rules[0].action.window: only with reset`}},
		{"delay string", `rules: [{action: delay}]`, []string{`rules[0].action: delay needs a duration`}},
		{"duplicate string", `rules: [{action: duplicate}]`, []string{`rules[0].action: duplicate needs a count`}},
		{"action number", `rules: [{action: 3}]`, []string{`rules[0].action: want drop, accept`}},
		{"action two", `rules: [{action: {delay: 1s, duplicate: 1}}]`, []string{`rules[0].action: delay and duplicate exclude each other`}},
		{"action none", `rules: [{action: {after: 1s}}]`, []string{`rules[0].action: want exactly one of delay, duplicate, reset, blackhole or drop`}},
		{"blackhole bare", `rules: [{action: blackhole}]`, []string{`rules[0].action: blackhole needs the directions, e.g. {blackhole: both}`}},
		{"blackhole direction", `rules: [{action: drop}, {action: drop}, {action: {blackhole: client}}]`,
			[]string{`rules[2].action.blackhole: unknown blackhole "client" (want both, to-client or to-server)`}},
		{"blackhole for zero", `rules: [{action: {blackhole: both, for: 0s}}]`,
			[]string{`rules[0].action.for: must be positive (leave it out for a blackhole that never heals)`}},
		{"blackhole for negative", `rules: [{action: {blackhole: both, for: -1s}}]`, []string{`rules[0].action.for: negative duration "-1s"`}},
		{"blackhole for not a duration", `rules: [{action: {blackhole: both, for: soon}}]`, []string{`rules[0].action.for: `}},
		{"for without blackhole", `rules: [{action: {drop: true, for: 2s}}]`, []string{`rules[0].action.for: only with blackhole`}},
		{"blackhole and reset", `rules: [{action: {blackhole: both, reset: client}}]`, []string{`rules[0].action: reset and blackhole exclude each other`}},
		{"action empty", `rules: [{action: {}}]`, []string{`rules[0].action: empty action`}},
		{"delay zero", `rules: [{action: {delay: 0s}}]`, []string{`rules[0].action.delay: must be positive`}},
		{"delay negative", `rules: [{action: {delay: -3ms}}]`, []string{`rules[0].action.delay: negative duration "-3ms"`}},
		{"jitter above delay", `rules: [{action: {delay: 10ms, jitter: 20ms}}]`, []string{`rules[0].action.jitter: 20ms is more than the delay 10ms`}},
		{"jitter without delay", `rules: [{action: {duplicate: 1, jitter: 2ms}}]`, []string{`rules[0].action.jitter: only with delay`}},
		{"after without duplicate", `rules: [{action: {delay: 1s, after: 2s}}]`, []string{`rules[0].action.after: only with duplicate`}},
		{"idle negative", `rules: [{match: {idle: -350s}, action: drop}]`, []string{`rules[0].match.idle: negative duration "-350s"`}},
		{"idle zero", `rules: [{match: {idle: 0s}, action: drop}]`, []string{`rules[0].match.idle: must be positive`}},
		{"idle unparsable", `rules: [{match: {idle: long}, action: drop}]`, []string{`rules[0].match.idle: bad duration "long"`}},
		{"idle without unit", `rules: [{match: {idle: 350}, action: drop}]`, []string{`rules[0].match.idle: duration 350 needs a unit, e.g. "350s"`}},
		{"idle past the tracker's idle timeout", `rules: [{match: {idle: 10m}, action: drop}]`, []string{`rules[0].match.idle: 10m0s is not below tracker.idle-timeout 10m0s: the tracker forgets a connection quiet that long, so the rule never matches`}},
		{"idle past a set idle timeout", `{tracker: {idle-timeout: 5m}, rules: [{action: drop}, {match: {idle: 350s}, action: drop}]}`, []string{`rules[1].match.idle: 5m50s is not below tracker.idle-timeout 5m0s: the tracker forgets a connection quiet that long, so the rule never matches`}},
		{"after negative", `rules: [{action: {duplicate: 1, after: -1s}}]`, []string{`rules[0].action.after: negative duration "-1s"`}},
		{"copies zero", `rules: [{action: {duplicate: 0}}]`, []string{`rules[0].action.duplicate: 0 is out of range 1-1000`}},
		{"copies flood", `rules: [{action: {duplicate: 100000}}]`, []string{`rules[0].action.duplicate: 100000 is out of range 1-1000`}},
		{"drop false", `rules: [{action: {drop: false}}]`, []string{`rules[0].action.drop: drop: false means nothing`}},
		{"duplicate names", `rules: [{name: a, action: drop}, {name: b, action: drop}, {name: a, action: drop}]`,
			[]string{`rules[2].name: duplicate rule name "a" (also rules[0])`}},
		{"name collides with default", `rules: [{action: drop}, {name: rule-1, action: drop}]`,
			[]string{`rules[1].name: duplicate rule name "rule-1" (also rules[0])`}},
		{"name control char", "rules: [{name: \"a\\tb\", action: drop}]", []string{`rules[0].name: control character`}},
		{"name list", `rules: [{name: [a], action: drop}]`, []string{`rules[0].name: want a string, got a list`}},
		{"bad mode", `intercept: {mode: inline}`, []string{`intercept.mode: unknown mode "inline" (want forward or local)`}},
		{"queue range", `intercept: {queue: 65536}`, []string{`intercept.queue: 65536 is out of range 0-65535`}},
		{"queues zero", `intercept: {queues: 0}`, []string{`intercept.queues: 0 is out of range 1-65535`}},
		{"queue-length zero", `intercept: {queue-length: 0}`, []string{`intercept.queue-length: 0 is out of range 1-1048576`}},
		{"queue-length too long", `intercept: {queue-length: 2000000}`, []string{`intercept.queue-length: 2000000 is out of range 1-1048576`}},
		{"queues past 16 bits", `intercept: {queue: 65535, queues: 2}`, []string{`intercept.queues: queues 65535 to 65536 go past 65535`}},
		{"intercept not map", `intercept: forward`, []string{`intercept: want a map, got "forward"`}},
		{"queues leave no conn_ids for the default max-connections", `intercept: {queues: 5000}`,
			[]string{`tracker.max-connections: 1000000 is above 524288, the most connections per queue that conn_ids leave each of 5000 queues (intercept.queues)`}},
		{"max-connections too many for 3 queues", `{intercept: {queues: 3}, tracker: {max-connections: 2147483647}}`,
			[]string{`tracker.max-connections: 2147483647 is above 1073741824, the most connections per queue that conn_ids leave each of 3 queues (intercept.queues)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tree(t, tc.yaml))
			if err == nil {
				t.Fatalf("Decode succeeded, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *FieldError", err)
			}
		})
	}
}

func TestDecodeReportsEveryErrorSorted(t *testing.T) {
	src := `
seed: x
tracker: {msl: -1s}
intercept: {hosts: [bad], ports: [0]}
rules:
` + strings.Repeat("  - {action: drop}\n", 9) + `
  - {action: {delay: 1s, jitter: 2s}, match: {packet: synack}}
  - {action: drop, probability: 2}
`
	_, err := Decode(tree(t, src))
	if err == nil {
		t.Fatal("Decode succeeded")
	}
	var paths []string
	for _, line := range strings.Split(err.Error(), "\n") {
		paths = append(paths, line[:strings.Index(line, ":")])
	}
	want := []string{
		"intercept.hosts[0]", "intercept.ports[0]",
		"rules[9].action.jitter", "rules[9].match.packet", "rules[10].probability",
		"seed", "tracker.msl",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("error paths %q\nwant %q\nerror: %v", paths, want, err)
	}
}

// Viper lowercases keys; a raw tree may not, so keys differing only in case
// collide.
func TestDecodeKeyGivenTwice(t *testing.T) {
	_, err := Decode(map[string]any{"seed": 1, "Seed": 2})
	if err == nil || !strings.HasPrefix(err.Error(), "seed: key given twice") {
		t.Errorf("got %v", err)
	}
}

// A problem in one field does not cause a second complaint in a field that
// depends on it.
func TestDecodeNoCascade(t *testing.T) {
	for src, want := range map[string]string{
		`rules: [{action: {delay: soon, jitter: 1s}}]`:                           `rules[0].action.delay: bad duration "soon" (want e.g. 300ms, 30s, 10m)`,
		`rules: [{match: {packet: [syn, bogus], closer: active}, action: drop}]`: `rules[0].match.packet[1]: unknown packet kind "bogus"`,
		`intercept: {queue: 70000, queues: 2}`:                                   `intercept.queue: 70000 is out of range 0-65535`,
	} {
		_, err := Decode(tree(t, src))
		if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want only %q", src, err, want)
		}
	}
}

func TestComparePaths(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"rules[2]", "rules[10]", -1},
		{"rules[10].x", "rules[9].y", 1},
		{"rules[02]", "rules[2]", 0},
		{"a", "a.b", -1},
		{"intercept", "rules", -1},
	} {
		if got := comparePaths(tc.a, tc.b); got != tc.want {
			t.Errorf("comparePaths(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	known := []string{"packet", "closer", "from", "nth", "retransmission", "state", "port", "src", "dst"}
	for key, want := range map[string]string{
		"pakcet": "packet", "packets": "packet", "ports": "port", "retransmision": "retransmission",
		"stat": "state", "weight": "", "x": "", "srcs": "src",
	} {
		if got := closest(key, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", key, got, want)
		}
	}
}

// A bad tracker.idle-timeout is the one error: match.idle is not held
// against the default it falls back to.
func TestIdleNotHeldAgainstABadIdleTimeout(t *testing.T) {
	_, err := Decode(tree(t, `{tracker: {idle-timeout: -5m}, rules: [{match: {idle: 20m}, action: drop}]}`))
	if err == nil || err.Error() != `tracker.idle-timeout: negative duration "-5m"` {
		t.Errorf("error %v, want only the idle timeout's", err)
	}
}
