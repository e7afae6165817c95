package pipeline_test

import (
	"slices"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestSwitchKeepsConnectionsAndRecomputesQuiet: a reload that adds a rule
// on data acts on the next data segment of a connection tracked before it,
// and makes the pipeline stop letting connections go quiet; switching back
// lets them again.
func TestSwitchKeepsConnectionsAndRecomputesQuiet(t *testing.T) {
	e := newEstablished(t, nil)
	e.p.Switch(rules.Compile(nil))
	if !e.p.AllowQuiet() {
		t.Fatal("AllowQuiet with no rules = false")
	}
	if data, _ := e.step(t); !data.Quiet {
		t.Fatalf("before the reload: data not quiet")
	}
	dropData := rules.Compile([]rules.Rule{{Name: "drop-data", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}}, Action: rules.Action{Type: rules.Drop}, Probability: 1}})
	if e.p.Switch(dropData) {
		t.Errorf("Switch to a set with a data rule reports quiet allowed")
	}
	data, ack := e.step(t)
	if data.Action != rules.Drop || data.Obs.Kind != statetrack.Data {
		t.Errorf("after the reload: data %s decided %s, want drop", data.Obs.Kind, data.Action)
	}
	if ack.Quiet {
		t.Errorf("after the reload: a verdict still lets the connection go quiet")
	}
	if e.p.Rules() != dropData {
		t.Errorf("Rules() is not the set switched to")
	}
	n := 0
	e.p.EachSlot(0, 1<<20, func(statetrack.ConnInfo) { n++ })
	if n != 1 {
		t.Errorf("tracked connections after the reload: %d, want the 1 from before", n)
	}
	if s := e.p.Summary(); len(s.Rules) != 1 || s.Rules[0].Name != "drop-data" || s.Rules[0].Hits != 1 {
		t.Errorf("summary rules %+v, want drop-data with 1 hit", s.Rules)
	}
	if !e.p.Switch(rules.Compile(nil)) {
		t.Errorf("Switch back to no rules reports quiet not allowed")
	}
}

// TestSummaryAddAcrossAReload: summaries taken of two queues' pipelines
// on either side of a reload (as a scrape or `ctl status` reads them one
// queue at a time) add up by rule, not by position: the reload added a
// rule ahead of the old one.
func TestSummaryAddAcrossAReload(t *testing.T) {
	before := pipeline.Summary{Rules: []pipeline.RuleHits{{Name: "b", Action: rules.Drop, Hits: 1}}}
	after := pipeline.Summary{Rules: []pipeline.RuleHits{{Name: "a", Action: rules.Delay, Hits: 2}, {Name: "b", Action: rules.Drop, Hits: 3}}}
	var total pipeline.Summary
	total.Add(before)
	total.Add(after)
	want := []pipeline.RuleHits{{Name: "b", Action: rules.Drop, Hits: 4}, {Name: "a", Action: rules.Delay, Hits: 2}}
	if !slices.Equal(total.Rules, want) {
		t.Errorf("rule hits %+v, want %+v", total.Rules, want)
	}
}
