//go:build linux

package main

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tcpchaos/tcpchaos/rules"
)

// TestDisableSurvivesAConcurrentReload: a rule disabled through the
// control socket while a reload that keeps it unchanged is under way stays
// disabled in the set in force (it was lost when it landed on the old set
// after the reload had carried the flags over).
func TestDisableSurvivesAConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	configs := []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")}
	for i, p := range []string{"1", "0.5"} {
		body := "rules:\n  - name: steered\n    match: {packet: syn}\n    action: drop\n" +
			"  - name: other\n    match: {packet: fin}\n    action: drop\n    probability: " + p + "\n"
		if err := os.WriteFile(configs[i], []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src := configSource{set: map[string]any{}}
	cfg, err := src.load(configs[0])
	if err != nil {
		t.Fatal(err)
	}
	s := &steering{source: src, status: io.Discard, file: configs[0], cfg: cfg, set: rules.Compile(cfg.Rules)}
	const reloads = 300
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := range reloads {
			if _, err := s.reload(configs[(i+1)%2], "the test"); err != nil {
				t.Errorf("reload: %v", err)
				return
			}
		}
	}()
	lost := 0
	for on := false; ; on = !on {
		select {
		case <-stop:
			wg.Wait()
			if lost > 0 {
				t.Errorf("%d times a rule enabled or disabled during a reload was not so in the set in force", lost)
			}
			return
		default:
		}
		if _, err := s.SetRuleEnabled("steered", on); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		if s.set.Enabled()[0] != on {
			lost++
		}
		s.mu.Unlock()
	}
}
