//go:build linux

package main

import (
	"errors"
	"strings"
	"testing"
)

// TestHelpDefaults pins what --help says of defaults that are not a flag's
// zero value: a run lasts until interrupted, and the seed is the config's.
func TestHelpDefaults(t *testing.T) {
	for _, cmd := range []string{"run", "replay", "validate"} {
		out, err := runCLI(t, cmd, "--help")
		if err != nil {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		if !strings.Contains(out, "--seed N") || !strings.Contains(out, "(default: the config's seed, 1 if it sets none)") {
			t.Errorf("%s --help: --seed line does not name the config's default:\n%s", cmd, out)
		}
		if strings.Contains(out, "(default: 0)") || strings.Contains(out, "(default: 0s)") {
			t.Errorf("%s --help shows a zero value as a default:\n%s", cmd, out)
		}
	}
	out, _ := runCLI(t, "run", "--help")
	if !strings.Contains(out, "stop after D (default: until interrupted)\n") {
		t.Errorf("run --help: --duration line is not \"stop after D (default: until interrupted)\":\n%s", out)
	}
}

// TestHelpExitCodes: run, replay and the app's own help say what exit
// status 3 means.
func TestHelpExitCodes(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"replay", "--help"}, {"--help"}} {
		out, err := runCLI(t, args...)
		if err != nil || !strings.Contains(out, "3 when one fails") && !strings.Contains(out, "3 an expectation failed") {
			t.Errorf("%v: %v, want exit status 3 explained:\n%s", args, err, out)
		}
	}
}

// TestHelpCommand: run --help says where -- CMD runs, how it is stopped
// and the default --linger.
func TestHelpCommand(t *testing.T) {
	out, _ := runCLI(t, "run", "--help")
	for _, want := range []string{"[-- CMD [ARGS...]]", "namespace tcpchaos was started in, not the --netns one",
		"SIGKILL 5s later", "128+N", "keep intercepting D after CMD exits (0: stop at once) (default: 2s)"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("run --help lacks %q:\n%s", want, out)
		}
	}
}

// TestHelpPcap: run --help says what --pcap records and what it cannot.
func TestHelpPcap(t *testing.T) {
	out, _ := runCLI(t, "run", "--help")
	for _, want := range []string{"--pcap FILE", "(pcapng, a comment on each fault; headers only", "bypasses the queue is not in it", "--pcap-all", "with --pcap: write every intercepted connection"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("run --help lacks %q:\n%s", want, out)
		}
	}
	if _, err := runCLI(t, "run", "-c", "../../configs/lost-fin.yaml", "--pcap-all"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--pcap-all: needs --pcap FILE") {
		t.Errorf("--pcap-all without --pcap: %v, want a usage error", err)
	}
}
