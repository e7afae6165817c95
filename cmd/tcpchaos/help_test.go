//go:build linux

package main

import (
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
