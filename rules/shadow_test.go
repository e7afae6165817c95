package rules_test

import (
	"os"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tcpchaos/tcpchaos/internal/config"
	"github.com/tcpchaos/tcpchaos/rules"
)

// designExample is the example config (config's testdata/design.yaml), which config's tests
// decode in full (when it cannot be read, the test fails on no warnings).
var designExample, _ = os.ReadFile("../internal/config/testdata/design.yaml")

// decodeRules decodes the rules of a YAML config as tcpchaos reads them.
func decodeRules(t *testing.T, src string) []rules.Rule {
	t.Helper()
	var tree map[string]any
	if err := yaml.Unmarshal([]byte(src), &tree); err != nil {
		t.Fatalf("bad test YAML: %v", err)
	}
	c, err := config.Decode(tree)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return c.Rules
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"design example", string(designExample), []string{
			"rules[3] (stale-syn) never decides: rules[0] (lose-first-syn) matches every packet it matches",
		}},
		{"catch-all first", `rules: [{action: accept, probability: 0.1}, {match: {packet: rst}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"narrow first", `rules: [{match: {packet: syn, nth: 1}, action: drop}, {match: {packet: syn}, action: {delay: 1s}}]`, nil},
		{"kinds subset", `rules: [{match: {packet: [syn, syn-ack]}, action: drop}, {match: {packet: syn-ack, from: server}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"kinds not subset", `rules: [{match: {packet: [syn]}, action: drop}, {match: {packet: [syn, rst]}, action: drop}]`, nil},
		{"closer selects fin", `rules: [{match: {packet: fin}, action: drop}, {match: {closer: passive}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"other side", `rules: [{match: {from: client}, action: drop}, {match: {from: server}, action: drop}]`, nil},
		{"retransmission", `rules: [{match: {retransmission: true}, action: drop}, {match: {retransmission: false}, action: drop}, {match: {retransmission: true, packet: fin}, action: drop}]`, []string{
			"rules[2] (rule-3) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"states and ports", `rules: [{match: {state: [time-wait, last-ack], port: [80, 443]}, action: drop}, {match: {state: time-wait, port: 443}, action: drop}, {match: {state: time-wait}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"idle", `rules: [{match: {idle: 5m}, action: drop}, {match: {idle: 8m}, action: drop}, {match: {idle: 1m}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
		{"prefixes", `rules: [{match: {src: [198.18.0.0/15, "fd00::/8"]}, action: drop}, {match: {src: [198.18.3.0/24, "fd00:1::/64"]}, action: drop}, {match: {src: 10.0.0.0/8}, action: drop}, {match: {dst: 198.18.0.0/15}, action: drop}]`, []string{
			"rules[1] (rule-2) never decides: rules[0] (rule-1) matches every packet it matches",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rules.Warnings(decodeRules(t, tc.yaml)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
