package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// expectRules are two rules for the expectations of the tests to name.
const expectRules = `
rules:
  - {name: lose-first-syn, match: {packet: syn, nth: 1}, action: drop}
  - {name: lose-final-ack-once, match: {packet: final-ack}, action: drop, limit: 1}
`

func TestDecodeExpect(t *testing.T) {
	c := decodeYAML(t, expectRules+`
expect:
  - name: server-retransmits-fin
    follows: {rule: lose-final-ack-once, packet: fin, from: server, closer: passive, nth: 2, within: 2s}
  - name: receiver-closes
    follows: {rule: lose-first-syn, packet: state, state: syn-rcvd, within: 1500ms}
  - name: no-stuck-last-ack
    never: {state: LAST_ACK, longer-than: 5s}
  - name: closes-complete
    reaches: {state: TIME_WAIT, from: client, connections: all}
  - name: some-close
    reaches: {state: closed, connections: 3}
  - name: fired-once
    hits: {rule: lose-first-syn, min: 1, max: 1}
  - name: at-most
    hits: {rule: lose-first-syn, max: "4"}
  - name: client-times-out
    exit: 28
`)
	server, client := statetrack.Server, statetrack.Client
	one, four := uint64(1), uint64(4)
	want := []expect.Expectation{
		{Name: "server-retransmits-fin", Check: &expect.Follows{Rule: "lose-final-ack-once", Packet: statetrack.Fin, From: &server, Closer: statetrack.Passive, Nth: 2, Within: 2 * time.Second}},
		{Name: "receiver-closes", Check: &expect.Follows{Rule: "lose-first-syn", State: statetrack.SynRcvd, Within: 1500 * time.Millisecond}},
		{Name: "no-stuck-last-ack", Check: &expect.Never{State: statetrack.LastAck, LongerThan: 5 * time.Second}},
		{Name: "closes-complete", Check: &expect.Reaches{State: statetrack.TimeWait, From: &client}},
		{Name: "some-close", Check: &expect.Reaches{State: statetrack.Closed, Connections: 3}},
		{Name: "fired-once", Check: &expect.Hits{Rule: "lose-first-syn", Min: &one, Max: &one}},
		{Name: "at-most", Check: &expect.Hits{Rule: "lose-first-syn", Max: &four}},
		{Name: "client-times-out", Check: &expect.Exit{Status: 28}},
	}
	if !reflect.DeepEqual(c.Expect, want) {
		t.Errorf("Expect = %v\nwant %v", c.Expect, want)
	}
	if c := decodeYAML(t, `expect: [{name: fails, exit: nonzero}]`); !reflect.DeepEqual(c.Expect[0].Check, &expect.Exit{Nonzero: true}) {
		t.Errorf("exit: nonzero gives %v", c.Expect[0].Check)
	}
}

func TestDecodeExpectErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown rule", `expect: [{name: a, hits: {rule: x, min: 1}}, {name: b, follows: {rule: lose-frist-syn, packet: syn, within: 1s}}]`,
			`expect[1].follows.rule: unknown rule "lose-frist-syn" (want one of lose-first-syn, lose-final-ack-once)`},
		{"unknown kind", `expect: [{name: a, follows: {rule: lose-first-syn, packet: synack, within: 1s}}]`,
			`expect[0].follows.packet: unknown packet kind "synack"`},
		{"unknown state", `expect: [{name: a, never: {state: HALF_OPEN, longer-than: 1s}}]`,
			`expect[0].never.state: unknown state "HALF_OPEN"`},
		{"negative bound", `expect: [{name: a, never: {state: LAST_ACK, longer-than: -1s}}]`,
			`expect[0].never.longer-than: negative duration "-1s"`},
		{"zero within", `expect: [{name: a, follows: {rule: lose-first-syn, packet: syn, within: 0s}}]`,
			`expect[0].follows.within: must be positive`},
		{"missing within", `expect: [{name: a, follows: {rule: lose-first-syn, packet: syn}}]`,
			`expect[0].follows.within: missing`},
		{"state without packet state", `expect: [{name: a, follows: {rule: lose-first-syn, packet: syn, state: CLOSED, within: 1s}}]`,
			`expect[0].follows.state: only with packet: state`},
		{"packet state without state", `expect: [{name: a, follows: {rule: lose-first-syn, packet: state, within: 1s}}]`,
			`expect[0].follows.state: missing`},
		{"closer without fin", `expect: [{name: a, follows: {rule: lose-first-syn, packet: syn, closer: active, within: 1s}}]`,
			`expect[0].follows.closer: only fin packets have a closer`},
		{"unknown key", `expect: [{name: a, never: {state: LAST_ACK, longer_than: 1s}}]`,
			`expect[0].never.longer_than: unknown key (did you mean "longer-than"?)`},
		{"unknown check", `expect: [{name: a, always: {}}]`, `expect[0].always: unknown key`},
		{"no check", `expect: [{name: a}]`, `expect[0]: want exactly one of follows, never, reaches, hits or exit`},
		{"two checks", `expect: [{name: a, exit: 0, hits: {rule: lose-first-syn, min: 1}}]`, `expect[0]: hits and exit exclude each other`},
		{"missing name", `expect: [{exit: 0}]`, `expect[0].name: missing`},
		{"duplicate name", `expect: [{name: a, exit: 0}, {name: a, never: {state: CLOSED, longer-than: 1s}}]`,
			`expect[1].name: duplicate expectation name "a" (also expect[0])`},
		{"two exits", `expect: [{name: a, exit: 0}, {name: b, exit: 1}]`, `expect[1].exit: only one exit expectation (also expect[0])`},
		{"exit range", `expect: [{name: a, exit: 256}]`, `expect[0].exit: 256 is out of range 0-255`},
		{"exit word", `expect: [{name: a, exit: never}]`, `expect[0].exit: want an exit status 0-255 or nonzero, got "never"`},
		{"hits without bounds", `expect: [{name: a, hits: {rule: lose-first-syn}}]`, `expect[0].hits: want min, max or both`},
		{"hits reversed", `expect: [{name: a, hits: {rule: lose-first-syn, min: 3, max: 1}}]`, `expect[0].hits.max: 1 is less than min 3`},
		{"hits negative", `expect: [{name: a, hits: {rule: lose-first-syn, min: -1}}]`, `expect[0].hits.min: -1 is negative`},
		{"connections zero", `expect: [{name: a, reaches: {state: CLOSED, connections: 0}}]`, `expect[0].reaches.connections: 0 is less than 1`},
		{"connections word", `expect: [{name: a, reaches: {state: CLOSED, connections: most}}]`,
			`expect[0].reaches.connections: want all or a number of connections, got "most"`},
		{"bad from", `expect: [{name: a, reaches: {state: CLOSED, from: both}}]`, `expect[0].reaches.from: unknown side "both"`},
		{"not a list", `expect: {name: a}`, `expect: want a list or a single value, got a map`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tree(t, expectRules+tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nlacks %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *FieldError", err)
			}
		})
	}
}

// An expectation's errors are reported with every other error, sorted by
// path, in one Decode.
func TestDecodeExpectErrorsWithTheOthers(t *testing.T) {
	_, err := Decode(tree(t, `
seed: x
rules: [{name: r, action: {delay: -1s}}]
expect:
  - {name: a, exit: 0}
  - {name: b, follows: {rule: s, packet: fn, within: 1s}}
`))
	var paths []string
	for _, line := range strings.Split(err.Error(), "\n") {
		paths = append(paths, line[:strings.Index(line, ":")])
	}
	want := []string{"expect[1].follows.packet", "expect[1].follows.rule", "rules[0].action.delay", "seed"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("error paths %q, want %q\nerror: %v", paths, want, err)
	}
}
