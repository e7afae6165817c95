package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const userTimeout = "../../statetrack/testdata/kernel-captures/user_timeout.pcap"

// report is the part of --report's JSON the tests read.
type report struct {
	Run struct {
		Command string `json:"command"`
		Input   string `json:"input"`
		Seed    uint64 `json:"seed"`
	} `json:"run"`
	Passed       bool             `json:"passed"`
	Rules        []map[string]any `json:"rules"`
	Expectations []struct {
		Name     string         `json:"name"`
		Holds    bool           `json:"holds"`
		Skipped  string         `json:"skipped"`
		Measured map[string]any `json:"measured"`
		Examples []struct {
			Conn string `json:"conn"`
		} `json:"counter_examples"`
	} `json:"expectations"`
}

func readReport(t *testing.T, path string) report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report %s: %v", path, err)
	}
	return r
}

// TestReplayExpectations replays a real kernel capture (a FIN lost, then
// retransmitted by the kernel) against expectations that hold and one that
// fails: the run fails with exit status 3, each outcome is printed after
// the summary and both reports say the same.
func TestReplayExpectations(t *testing.T) {
	dir := t.TempDir()
	rep, junit := filepath.Join(dir, "report.json"), filepath.Join(dir, "junit.xml")
	out, err := runCLI(t, "replay", "-c", "testdata/expect-user-timeout.yaml", "--pcap", userTimeout, "--report", rep, "--junit", junit)
	var fe failedError
	if !errors.As(err, &fe) || fe.failed != 1 || fe.of != 5 {
		t.Fatalf("replay: %v, want 1 of 5 expectations failed\n%s", err, out)
	}
	summary := strings.Index(out, "actions:")
	for _, line := range []string{
		"expect fin-retransmitted: holds: 1 of 1 firings followed, after 319ms\n",
		"expect fired-once: holds: 1 hit\n",
		"expect short-fin-wait: holds: longest stay in FIN_WAIT_1 1.279s (192.0.2.1:39639->192.168.0.1:8080)\n",
		"expect closes: FAILS: 0 of 1 connections reached TIME_WAIT; first counter-example 192.0.2.1:39639->192.168.0.1:8080 at 12:44:50.634802: either endpoint never reached TIME_WAIT\n",
		"expect times-out: skipped: no command ran\n",
	} {
		if i := strings.Index(out, line); i < summary {
			t.Errorf("output lacks %q after the summary:\n%s", line, out)
		}
	}

	r := readReport(t, rep)
	if r.Run.Command != "replay" || r.Run.Input != userTimeout || r.Run.Seed != 1 || r.Passed || len(r.Rules) != 1 || r.Rules[0]["hits"] != 1.0 {
		t.Errorf("report %+v", r)
	}
	var names []string
	for _, e := range r.Expectations {
		names = append(names, e.Name)
	}
	if want := []string{"fin-retransmitted", "fired-once", "short-fin-wait", "closes", "times-out"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("report expectations %q, want %q", names, want)
	}
	if f := r.Expectations[0]; !f.Holds || f.Measured["gap_max_seconds"] != 0.319321 {
		t.Errorf("follows in the report: %+v, want a gap of 0.319321 s", f)
	}
	if c := r.Expectations[3]; c.Holds || len(c.Examples) != 1 || c.Examples[0].Conn != "192.0.2.1:39639->192.168.0.1:8080" {
		t.Errorf("reaches in the report: %+v", c)
	}

	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suite    struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &suites); err != nil {
		t.Fatal(err)
	}
	if suites.Tests != 5 || suites.Failures != 1 || suites.Skipped != 1 || len(suites.Suite.Cases) != 5 ||
		suites.Suite.Cases[3].Name != "closes" || suites.Suite.Cases[3].Failure == nil {
		t.Errorf("junit %+v", suites)
	}
}

// With expectations that all hold, replay succeeds.
func TestReplayExpectationsHold(t *testing.T) {
	cfg := writeFile(t, "c.yaml", `
rules: [{name: lose-first-fin, match: {packet: fin, nth: 1}, action: drop}]
expect:
  - {name: a, follows: {rule: lose-first-fin, packet: fin, nth: 2, within: 500ms}}
  - {name: b, never: {state: CLOSE_WAIT, longer-than: 1s}}
  - {name: c, reaches: {state: CLOSED, from: server, connections: 1}}
`)
	out, err := runCLI(t, "replay", "-c", cfg, "--pcap", userTimeout)
	if err != nil || strings.Count(out, ": holds: ") != 3 {
		t.Errorf("replay: %v, want 3 expectations to hold\n%s", err, out)
	}
	cfg = writeFile(t, "c.yaml", `
rules: [{name: lose-first-fin, match: {packet: fin, nth: 1}, action: drop}]
expect: [{name: a, follows: {rule: lose-first-fin, packet: fin, nth: 2, within: 300ms}}]
`)
	if out, err := runCLI(t, "replay", "-c", cfg, "--pcap", userTimeout); !errors.As(err, new(failedError)) ||
		!strings.Contains(out, "expect a: FAILS: 1 firing, none followed within 300ms; first counter-example 192.0.2.1:39639->192.168.0.1:8080 at 12:44:52.735231") {
		t.Errorf("a 300ms bound on a 319ms retransmission: %v\n%s", err, out)
	}
}

// TestReplayScenariosEvaluateTheirExpectations replays every kernel
// capture under every scenario of configs/ with --report: each report
// lists exactly the scenario's expectations, and a replay fails only by
// an expectation failing.
func TestReplayScenariosEvaluateTheirExpectations(t *testing.T) {
	scenarios, _ := filepath.Glob("../../configs/*.yaml")
	captures, _ := filepath.Glob("../../statetrack/testdata/kernel-captures/*.pcap")
	if len(scenarios) == 0 || len(captures) == 0 {
		t.Fatal("no scenarios or no captures")
	}
	for _, sc := range scenarios {
		described, err := runCLI(t, "validate", "-c", sc)
		if err != nil {
			t.Fatal(err)
		}
		exps := strings.Count(described, "\nexpect ")
		for _, capture := range captures {
			rep := filepath.Join(t.TempDir(), "report.json")
			out, err := runCLI(t, "replay", "-c", sc, "--pcap", capture, "--report", rep)
			if err != nil && !errors.As(err, new(failedError)) {
				t.Fatalf("%s on %s: %v\n%s", sc, capture, err, out)
			}
			r := readReport(t, rep)
			if len(r.Expectations) != exps || r.Passed != (err == nil) {
				t.Errorf("%s on %s: report lists %d expectations (passed %t), the config %d (error %v)",
					sc, capture, len(r.Expectations), r.Passed, exps, err)
			}
		}
	}
}

func TestExitCodes(t *testing.T) {
	cfg := writeFile(t, "c.yaml", "rules: [{name: r, action: drop}]\nexpect: [{name: a, hits: {rule: r, min: 100}}]\n")
	_, failed := runCLI(t, "replay", "-c", cfg, "--pcap", userTimeout)
	bad := writeFile(t, "bad.yaml", "expect: [{name: a, hits: {rule: nope, min: 1}}]\n")
	_, usage := runCLI(t, "replay", "-c", bad, "--pcap", userTimeout)
	_, missing := runCLI(t, "replay", "-c", cfg, "--pcap", filepath.Join(t.TempDir(), "nope.pcap"))
	cfgOK := writeFile(t, "ok.yaml", "rules: [{name: r, match: {packet: fin}, action: drop}]\nexpect: [{name: a, hits: {rule: r, min: 1}}]\n")
	_, ok := runCLI(t, "replay", "-c", cfgOK, "--pcap", userTimeout)
	for _, tc := range []struct {
		what string
		err  error
		want int
	}{
		{"expectation failed", failed, 3},
		{"bad expectation", usage, 2},
		{"missing capture", missing, 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exit %d (%v), want %d", tc.what, got, tc.err, tc.want)
		}
	}
	if ok != nil {
		t.Errorf("every expectation holds: %v, want success", ok)
	}
	if usage == nil || !strings.Contains(usage.Error(), `expect[0].hits.rule: unknown rule "nope"`) {
		t.Errorf("bad expectation: %v, want the key path", usage)
	}
}

func TestValidateDescribesExpectations(t *testing.T) {
	out, err := runCLI(t, "validate", "-c", "testdata/expect-user-timeout.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`expect 1 "fin-retransmitted": each time rule "lose-first-fin" fires, a fin #2 from the server follows in the same connection within 2s`,
		`expect 2 "fired-once": rule "lose-first-fin" acts on exactly 1 packet`,
		`expect 3 "short-fin-wait": no endpoint stays in FIN_WAIT_1 longer than 2s`,
		`expect 4 "closes": every connection reaches TIME_WAIT at either endpoint`,
		`expect 5 "times-out": the command's exit status is 28`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("validate lacks %q:\n%s", line, out)
		}
	}
}
