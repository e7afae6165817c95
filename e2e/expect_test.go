package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRunEvaluatesExpectations: a live `tcpchaos run` evaluates its
// config's expectations from the events of real kernel stacks (a lost
// first SYN), prints one line each after the summary, writes the report
// and exits 3 because one of them fails.
func TestRunEvaluatesExpectations(t *testing.T) {
	t.Parallel()
	s := newScenarioWith(t, filepath.Join("testdata", "expect-lost-first-syn.yaml"), false)
	report := s.report
	s.listen(pingPong(0))
	c, _ := s.dial()
	request(t, c)
	c.Close()
	s.waitClosed()
	s.toClient.Stop()
	s.toServer.Stop()
	if code := s.chaos.signal(syscall.SIGINT); code != 3 {
		t.Errorf("exit code %d, want 3 (an expectation failed)\nstderr:\n%s", code, s.chaos.stderr.String())
	}
	out := s.chaos.stdout.String()
	for _, want := range []string{
		"expect syn-retransmitted: holds: 1 of 1 firings followed, after 1",
		"expect fired-once: holds: 1 hit",
		"expect server-established: holds: 1 of 1 connections reached ESTABLISHED",
		"expect client-closes: holds: 1 of 1 connections reached TIME_WAIT",
		"expect quick-connect: FAILS: longest stay in SYN_SENT 1",
	} {
		if i := strings.Index(out, want); i < strings.Index(out, "actions:") {
			t.Errorf("output lacks %q after the summary:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Run struct {
			Command string `json:"command"`
		} `json:"run"`
		Passed       bool `json:"passed"`
		Expectations []struct {
			Name     string         `json:"name"`
			Holds    bool           `json:"holds"`
			Measured map[string]any `json:"measured"`
			Examples []struct {
				Conn string `json:"conn"`
			} `json:"counter_examples"`
		} `json:"expectations"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	if r.Run.Command != "run" || r.Passed || len(r.Expectations) != 5 {
		t.Fatalf("report %+v", r)
	}
	gap, _ := r.Expectations[0].Measured["gap_max_seconds"].(float64)
	if !r.Expectations[0].Holds || gap < 0.9 || gap > 3 {
		t.Errorf("syn-retransmitted: %+v, want a gap of about 1 s", r.Expectations[0])
	}
	q := r.Expectations[4]
	if q.Holds || len(q.Examples) != 1 || !strings.HasPrefix(q.Examples[0].Conn, s.client.String()+":") {
		t.Errorf("quick-connect: %+v, want the client's connection as counter-example", q)
	}
}
