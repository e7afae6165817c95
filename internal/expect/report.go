package expect

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Run describes the run a report is about.
type Run struct {
	// Command is "run" or "replay"; Config the config file; Input the
	// capture a replay read.
	Command, Config, Input string
	// Version is tcpchaos's version.
	Version string
	// Seed is the run's seed (same seed, same traffic, same decisions).
	Seed uint64
	// Start and End bound the run (under replay: the capture's times).
	Start, End time.Time
}

// Report is the JSON document of --report. Its field names are a stable
// interface (README "Reports"): fields may be added, never renamed.
type Report struct {
	Tool         string              `json:"tool"`
	Run          RunReport           `json:"run"`
	Passed       bool                `json:"passed"`
	Summary      SummaryReport       `json:"summary"`
	Rules        []RuleReport        `json:"rules"`
	Expectations []ExpectationReport `json:"expectations"`
}

// RunReport is the report's "run" object.
type RunReport struct {
	Command         string    `json:"command"`
	Config          string    `json:"config"`
	Input           string    `json:"input,omitempty"`
	Version         string    `json:"version"`
	Seed            uint64    `json:"seed"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	DurationSeconds float64   `json:"duration_seconds"`
	// ExitStatus is the command's exit status, absent when no command ran.
	ExitStatus *int `json:"exit_status,omitempty"`
	// EventsLost counts the events the expectations were evaluated
	// without (the event writer fell behind its buffer).
	EventsLost uint64 `json:"events_lost"`
}

// SummaryReport is the report's "summary" object: the counts of the
// printed summary.
type SummaryReport struct {
	Connections      uint64            `json:"connections"`
	TrackedAtEnd     int               `json:"tracked_at_end"`
	Midstream        uint64            `json:"midstream"`
	NewIncarnations  uint64            `json:"new_incarnations"`
	TimeWaitExpired  uint64            `json:"time_wait_expired"`
	IdleExpired      uint64            `json:"idle_expired"`
	Evicted          uint64            `json:"evicted"`
	UntrackedPackets uint64            `json:"untracked_packets"`
	Packets          map[string]uint64 `json:"packets"`
	Actions          map[string]uint64 `json:"actions"`
}

// RuleReport is one rule's hit count.
type RuleReport struct {
	Name string `json:"name"`
	Hits uint64 `json:"hits"`
}

// ExpectationReport is one expectation's outcome.
type ExpectationReport struct {
	Name            string          `json:"name"`
	Type            string          `json:"type"`
	Text            string          `json:"text"`
	Holds           bool            `json:"holds"`
	Skipped         string          `json:"skipped,omitempty"`
	Figure          string          `json:"figure"`
	Measured        MeasuredReport  `json:"measured"`
	Failures        uint64          `json:"failures"`
	CounterExamples []ExampleReport `json:"counter_examples"`
}

// MeasuredReport holds the measured values of an expectation; only those
// of its type are present. Durations are in seconds.
type MeasuredReport struct {
	Firings        *uint64     `json:"firings,omitempty"`
	Reactions      *uint64     `json:"reactions,omitempty"`
	Gaps           []GapReport `json:"gaps,omitempty"`
	GapMinSeconds  *float64    `json:"gap_min_seconds,omitempty"`
	GapMaxSeconds  *float64    `json:"gap_max_seconds,omitempty"`
	LongestSeconds *float64    `json:"longest_seconds,omitempty"`
	LongestConn    string      `json:"longest_conn,omitempty"`
	Reached        *uint64     `json:"reached,omitempty"`
	Connections    *uint64     `json:"connections,omitempty"`
	Hits           *uint64     `json:"hits,omitempty"`
	ExitStatus     *int        `json:"exit_status,omitempty"`
}

// GapReport is one measured reaction.
type GapReport struct {
	Conn       string    `json:"conn"`
	Time       time.Time `json:"time"`
	GapSeconds float64   `json:"gap_seconds"`
}

// ExampleReport is one counter-example.
type ExampleReport struct {
	Conn   string    `json:"conn"`
	ConnID uint64    `json:"conn_id"`
	Time   time.Time `json:"time"`
	What   string    `json:"what"`
}

// NewReport assembles the report of run from its summary and outcomes.
func NewReport(run Run, s pipeline.Summary, os []Outcome) Report {
	r := Report{
		Tool: "tcpchaos",
		Run: RunReport{Command: run.Command, Config: run.Config, Input: run.Input, Version: run.Version,
			Seed: run.Seed, Start: run.Start, End: run.End, DurationSeconds: run.End.Sub(run.Start).Seconds()},
		Passed:       !Failed(os),
		Summary:      summaryReport(s),
		Rules:        []RuleReport{},
		Expectations: []ExpectationReport{},
	}
	for _, h := range s.Rules {
		r.Rules = append(r.Rules, RuleReport{Name: h.Name, Hits: h.Hits})
	}
	for _, o := range os {
		if o.Type == "exit" {
			r.Run.ExitStatus = o.Measured.Status
		}
		r.Run.EventsLost = o.EventsLost
		r.Expectations = append(r.Expectations, expectationReport(o))
	}
	return r
}

func summaryReport(s pipeline.Summary) SummaryReport {
	t := s.Tracker
	sr := SummaryReport{Connections: t.Connections, TrackedAtEnd: s.Tracked, Midstream: t.Midstream,
		NewIncarnations: t.NewIncarnations, TimeWaitExpired: t.TimeWaitExpired, IdleExpired: t.IdleExpired,
		Evicted: t.Evicted, UntrackedPackets: t.Untracked,
		Packets: map[string]uint64{}, Actions: map[string]uint64{}}
	for _, k := range statetrack.Kinds() {
		sr.Packets[k.String()] = s.Stats.Packets[k]
	}
	for _, a := range rules.ActionTypes() {
		sr.Actions[a.String()] = s.Stats.Actions[a]
	}
	return sr
}

func expectationReport(o Outcome) ExpectationReport {
	er := ExpectationReport{Name: o.Name, Type: o.Type, Text: o.Text, Holds: o.Holds, Skipped: o.Skipped,
		Figure: o.Figure, Failures: o.Failures, CounterExamples: []ExampleReport{}}
	for _, ce := range o.CounterExamples {
		er.CounterExamples = append(er.CounterExamples, ExampleReport{Conn: ce.Conn, ConnID: ce.ConnID, Time: ce.At, What: ce.What})
	}
	m, mr := o.Measured, &er.Measured
	switch o.Type {
	case "follows":
		mr.Firings, mr.Reactions = &m.Firings, &m.Reactions
		for _, g := range m.Gaps {
			mr.Gaps = append(mr.Gaps, GapReport{Conn: g.Conn, Time: g.At, GapSeconds: g.Gap.Seconds()})
		}
		if m.Reactions > 0 {
			mr.GapMinSeconds, mr.GapMaxSeconds = seconds(m.GapMin), seconds(m.GapMax)
		}
	case "never":
		mr.LongestSeconds, mr.LongestConn = seconds(m.Longest), m.LongestConn
	case "reaches":
		mr.Reached, mr.Connections = &m.Reached, &m.Connections
	case "hits":
		mr.Hits = &m.Hits
	case "exit":
		mr.ExitStatus = m.Status
	}
	return er
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
