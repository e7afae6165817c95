package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the timeline golden files in testdata/timeline")

const kernelCaptures = "../../statetrack/testdata/kernel-captures/"

// replayEvents replays a kernel capture under a scenario config and
// returns the events file it wrote: real kernels' packets, real rules.
// The scenario's expectations are about the traffic of its e2e test, not
// these captures: their failing (exit 3) does not concern the timeline.
func replayEvents(t *testing.T, config, capture string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if out, err := runCLI(t, "replay", "-c", "../../configs/"+config, "--pcap", kernelCaptures+capture, "--events", path); err != nil && exitCode(err) != exitExpect {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	return path
}

// TestTimelineGolden pins timeline's output, Unicode and ASCII, on the
// events of replays of kernel captures. Rewrite with -update.
func TestTimelineGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, config, capture string
		args                    []string
	}{
		// The server's FIN lost: the kernel retransmits it 0.32 s later.
		{"lost-fin", "lost-fin.yaml", "user_timeout.pcap", nil},
		{"lost-fin-ascii", "lost-fin.yaml", "user_timeout.pcap", []string{"--ascii"}},
		// Two incarnations of one tuple, no rule faults either.
		{"untouched", "lost-fin.yaml", "rfc5961-syn-established.pcap", nil},
		{"untouched-all", "lost-fin.yaml", "rfc5961-syn-established.pcap", []string{"--all"}},
		{"untouched-all-ascii", "lost-fin.yaml", "rfc5961-syn-established.pcap", []string{"--all", "--ascii"}},
		// Both FINs lost (each closer's first), flags after the file.
		{"crossing-fins-ascii", "lost-fin.yaml", "crossing-fins.pcap", []string{"--ascii"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			evs := replayEvents(t, tc.config, tc.capture)
			out, err := runCLI(t, append([]string{"timeline", evs}, tc.args...)...)
			if err != nil {
				t.Fatalf("timeline: %v\n%s", err, out)
			}
			out = strings.ReplaceAll(out, evs, "EVENTS.jsonl")
			golden := filepath.Join("testdata", "timeline", tc.golden+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if out != string(want) {
				t.Errorf("timeline %s differs from %s:\n%s\nwant:\n%s", strings.Join(tc.args, " "), golden, out, want)
			}
			if strings.HasSuffix(tc.golden, "-ascii") {
				for i, r := range out {
					if r >= 0x80 {
						t.Fatalf("ASCII timeline has %q at byte %d", r, i)
					}
				}
			}
		})
	}
}

func TestTimelineSelectsByConn(t *testing.T) {
	evs := replayEvents(t, "lost-fin.yaml", "rfc5961-syn-established.pcap")
	all, err := runCLI(t, "timeline", "--all", evs)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(all, "connection 198.18.0.2:40002->"); n != 2 {
		t.Fatalf("--all draws %d connections, want 2:\n%s", n, all)
	}
	// By the client's address:port: both incarnations of the tuple.
	byAddr, err := runCLI(t, "timeline", "--conn", "198.18.0.2:40002", evs)
	if err != nil || byAddr != all {
		t.Errorf("--conn 198.18.0.2:40002 = %v\n%s\nwant every incarnation:\n%s", err, byAddr, all)
	}
	// By conn_id: the one incarnation.
	id := all[strings.Index(all, "(id ")+4:]
	id = id[:strings.Index(id, ";")]
	byID, err := runCLI(t, "timeline", evs, "--conn", id)
	if err != nil || strings.Count(byID, "connection ") != 1 || !strings.Contains(byID, "(id "+id+";") {
		t.Errorf("--conn %s = %v\n%s\nwant that connection alone", id, err, byID)
	}
	if out, err := runCLI(t, "timeline", "--conn", "198.18.0.2:1", evs); err == nil || !strings.Contains(err.Error(), "no connection in") {
		t.Errorf("--conn of no connection = %v\n%s, want an error", err, out)
	}
	if _, err := runCLI(t, "timeline", "--conn", "nowhere", evs); exitCode(err) != exitUsage {
		t.Errorf("--conn nowhere = %v, want a usage error", err)
	}
}

func TestTimelineBadLine(t *testing.T) {
	evs := replayEvents(t, "lost-fin.yaml", "user_timeout.pcap")
	data, err := os.ReadFile(evs)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines[2] = strings.Replace(lines[2], `"client_state":"`, `"client_state":"X`, 1)
	bad := writeFile(t, "bad.jsonl", strings.Join(lines, ""))
	_, err = runCLI(t, "timeline", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl: line 3: event: client_state: unknown state") {
		t.Fatalf("timeline of a bad line = %v, want the file, the line and the reason", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
}
