package expect

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// sampleOutcomes are a holding follows, a failing never and a skipped exit.
func sampleOutcomes(t *testing.T) []Outcome {
	ev := New([]Expectation{
		{Name: "syn-retransmitted", Check: &Follows{Rule: "r", Packet: statetrack.Syn, Within: 2 * time.Second}},
		{Name: "no-stuck-syn-sent", Check: &Never{State: statetrack.SynSent, LongerThan: 500 * time.Millisecond}},
		{Name: "times-out", Check: &Exit{Status: 28}},
	})
	for _, e := range lostSyn(1, 0, 1020) {
		ev.Emit(*e)
	}
	return ev.End(time.Time{}, map[string]uint64{"r": 1})
}

func sampleReport(t *testing.T) Report {
	var s pipeline.Summary
	s.Tracker.Connections = 1
	s.Stats.Packets[statetrack.Syn] = 2
	s.Rules = []pipeline.RuleHits{{Name: "r", Hits: 1}}
	run := Run{Command: "replay", Config: "c.yaml", Input: "in.pcap", Version: "test", Start: ms(0), End: ms(1500)}
	return NewReport(run, s, sampleOutcomes(t))
}

// The report is read back as a CI system would: by its documented field
// names.
func TestReportJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport(t).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tool string `json:"tool"`
		Run  struct {
			Command         string    `json:"command"`
			Config          string    `json:"config"`
			Input           string    `json:"input"`
			Start           time.Time `json:"start"`
			DurationSeconds float64   `json:"duration_seconds"`
			ExitStatus      *int      `json:"exit_status"`
		} `json:"run"`
		Passed  bool `json:"passed"`
		Summary struct {
			Connections uint64            `json:"connections"`
			Packets     map[string]uint64 `json:"packets"`
			Actions     map[string]uint64 `json:"actions"`
		} `json:"summary"`
		Rules []struct {
			Name string `json:"name"`
			Hits uint64 `json:"hits"`
		} `json:"rules"`
		Expectations []struct {
			Name     string         `json:"name"`
			Type     string         `json:"type"`
			Holds    bool           `json:"holds"`
			Skipped  string         `json:"skipped"`
			Measured map[string]any `json:"measured"`
			Failures uint64         `json:"failures"`
			Examples []struct {
				Conn   string    `json:"conn"`
				ConnID uint64    `json:"conn_id"`
				Time   time.Time `json:"time"`
				What   string    `json:"what"`
			} `json:"counter_examples"`
		} `json:"expectations"`
	}
	var top map[string]any
	if err := json.Unmarshal(b.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(top))
	if want := []string{"expectations", "passed", "rules", "run", "summary", "tool"}; !slices.Equal(keys, want) {
		t.Errorf("top-level fields %q, want %q", keys, want)
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tool != "tcpchaos" || doc.Run.Command != "replay" || doc.Run.Config != "c.yaml" || doc.Run.Input != "in.pcap" ||
		!doc.Run.Start.Equal(ms(0)) || doc.Run.DurationSeconds != 1.5 || doc.Run.ExitStatus != nil || doc.Passed {
		t.Errorf("run %+v passed %t", doc.Run, doc.Passed)
	}
	if doc.Summary.Connections != 1 || doc.Summary.Packets["syn"] != 2 || doc.Summary.Actions["drop"] != 0 ||
		len(doc.Rules) != 1 || doc.Rules[0].Name != "r" || doc.Rules[0].Hits != 1 {
		t.Errorf("summary %+v rules %+v", doc.Summary, doc.Rules)
	}
	if len(doc.Expectations) != 3 {
		t.Fatalf("%d expectations, want 3", len(doc.Expectations))
	}
	f, n, x := doc.Expectations[0], doc.Expectations[1], doc.Expectations[2]
	gaps, _ := f.Measured["gaps"].([]any)
	if f.Name != "syn-retransmitted" || f.Type != "follows" || !f.Holds || f.Measured["firings"] != 1.0 ||
		f.Measured["gap_max_seconds"] != 1.02 || len(gaps) != 1 || len(f.Examples) != 0 {
		t.Errorf("follows %+v", f)
	}
	if n.Holds || n.Failures != 1 || n.Measured["longest_seconds"] != 1.021 || len(n.Examples) != 1 ||
		n.Examples[0].Conn != connName(1) || n.Examples[0].ConnID != 1 || !n.Examples[0].Time.Equal(ms(0)) {
		t.Errorf("never %+v", n)
	}
	if !x.Holds || x.Skipped != "no command ran" || len(x.Measured) != 0 {
		t.Errorf("exit %+v", x)
	}
}
