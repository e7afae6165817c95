package rules

import (
	"reflect"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestDisabledRuleIsSkipped(t *testing.T) {
	s := Compile([]Rule{
		{Name: "drop-data", Match: Match{Packets: []statetrack.Kind{statetrack.Data}}, Action: Action{Type: Drop}, Probability: 1},
		{Name: "delay-all", Action: Action{Type: Delay}, Probability: 1},
	})
	e := NewEngine(s, 1)
	if d := e.Decide(obs(statetrack.Data)); d.Rule != 0 {
		t.Fatalf("enabled: rule %d decides, want 0", d.Rule)
	}
	if !s.SetEnabled("drop-data", false) {
		t.Fatal("SetEnabled(drop-data) reports no such rule")
	}
	if d := e.Decide(obs(statetrack.Data)); d.Rule != 1 || d.Action != Delay {
		t.Errorf("disabled: rule %d (%v) decides, want the next rule, 1 (delay)", d.Rule, d.Action)
	}
	if got := s.Enabled(); !reflect.DeepEqual(got, []bool{false, true}) {
		t.Errorf("Enabled() = %v, want [false true]", got)
	}
	s.SetEnabled("drop-data", true)
	if d := e.Decide(obs(statetrack.Data)); d.Rule != 0 {
		t.Errorf("re-enabled: rule %d decides, want 0", d.Rule)
	}
	if s.SetEnabled("nope", false) {
		t.Error("SetEnabled(nope) reports a rule")
	}
}

func TestCarryLimitsByNameAndFlagsOfUnchangedRules(t *testing.T) {
	drop := func(name string, limit uint64) Rule {
		return Rule{Name: name, Action: Action{Type: Drop}, Probability: 1, Limit: limit}
	}
	old := Compile([]Rule{drop("kept", 3), drop("changed", 3), drop("removed", 3)})
	e := NewEngine(old, 1)
	e.Decide(obs(statetrack.Data)) // "kept" acts once
	old.SetEnabled("changed", false)
	e.Decide(obs(statetrack.Data)) // "kept" again: 2 of 3
	old.SetEnabled("kept", false)

	// The new set reorders, changes "changed"'s limit and adds "new".
	s := Compile([]Rule{drop("new", 0), drop("changed", 4), drop("kept", 3)})
	s.Carry(old)
	if got, want := s.Hits(), []uint64{0, 0, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("hits after Carry = %v, want %v (by name)", got, want)
	}
	if got, want := s.Enabled(), []bool{true, true, false}; !reflect.DeepEqual(got, want) {
		t.Errorf("enabled after Carry = %v, want %v (kept's flag survives, changed's does not)", got, want)
	}
	e.Switch(s)
	if got, want := e.Hits(), []uint64{0, 0, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("engine hits after Switch = %v, want %v", got, want)
	}
	// "kept" is disabled; enabled again, it has one packet left of its 3.
	s.SetEnabled("new", false)
	s.SetEnabled("changed", false)
	s.SetEnabled("kept", true)
	var got []int
	for range 3 {
		got = append(got, e.Decide(obs(statetrack.Data)).Rule)
	}
	if want := []int{2, -1, -1}; !reflect.DeepEqual(got, want) {
		t.Errorf("decisions after the reload = %v, want %v (the carried limit is 1 short of used up)", got, want)
	}
}
