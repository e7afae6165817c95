package rules

import (
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestBlackholeDecision: the matching packet is dropped when it travels
// in a dark direction and accepted when it travels the other way; both
// decisions carry the directions and the duration, and say so in words.
func TestBlackholeDecision(t *testing.T) {
	for _, tc := range []struct {
		dark       Endpoints
		fromServer bool
		want       ActionType
		note       string
	}{
		{Both, false, Blackhole, "● blackholed both for 2s"},
		{ToServer, false, Blackhole, "● blackholed to-server for 2s"},
		{ToClient, false, Accept, "accepted"},
		{ToClient, true, Blackhole, "● blackholed to-client for 2s"},
		{ToServer, true, Accept, "accepted"},
	} {
		s := Compile([]Rule{{Name: "dark", Action: Action{Type: Blackhole, Blackhole: tc.dark, For: 2 * time.Second}, Probability: 1}})
		o := obs(statetrack.Data)
		if tc.fromServer {
			fromServer(o)
		}
		got := NewEngine(s, 1).Decide(o)
		want := Decision{Action: tc.want, Dark: tc.dark, For: 2 * time.Second, Rule: 0, RuleName: "dark"}
		if got != want {
			t.Errorf("%s from server %v: got %+v, want %+v", tc.dark.Direction(), tc.fromServer, got, want)
		}
		if n := got.Note(); n != tc.note {
			t.Errorf("%s from server %v: note %q, want %q", tc.dark.Direction(), tc.fromServer, n, tc.note)
		}
		if !s.Darkens() {
			t.Errorf("a blackhole rule's set does not darken")
		}
	}
	if Compile([]Rule{drop(Match{})}).Darkens() {
		t.Error("a drop rule's set darkens")
	}
}

// TestBlackholeWords: the action reads in words with its direction and
// duration, and its form is listed.
func TestBlackholeWords(t *testing.T) {
	for a, want := range map[Action]string{
		{Type: Blackhole, Blackhole: Both}:                           "blackhole both",
		{Type: Blackhole, Blackhole: ToClient, For: 3 * time.Second}: "blackhole to-client for 3s",
	} {
		if got := a.String(); got != want {
			t.Errorf("%+v: %q, want %q", a, got, want)
		}
	}
	if _, err := ParseAction("blackhole"); err == nil || err.Error() != "blackhole needs the directions, e.g. {blackhole: both}" {
		t.Errorf("bare blackhole: %v", err)
	}
}
