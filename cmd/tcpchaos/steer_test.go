//go:build linux

package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
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

func TestConnListKeepsTheMostRecentlyActive(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, limit := range []int{0, 1, 3, 10} {
		l := connList{limit: limit}
		for i := range 10 { // activity 0..9 s, every third quiet
			l.add(statetrack.ConnInfo{ConnID: uint64(i), Last: t0.Add(time.Duration(i) * time.Second), Quiet: i%3 == 0})
			if limit > 0 && len(l.cis) >= 2*limit {
				t.Fatalf("limit %d: %d connections held", limit, len(l.cis))
			}
		}
		var got []uint64
		for _, ci := range l.sorted() {
			got = append(got, ci.ConnID)
		}
		want := []uint64{8, 7, 5, 4, 2, 1, 9, 6, 3, 0} // the most recent first, quiet ones last
		if limit > 0 {
			want = want[:min(limit, len(want))]
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: got %v, want %v", limit, got, want)
		}
	}
}

// TestMayQuietAfterEarlierSets: a set whose data rules select one nth
// lets connections go quiet only if its nth are at most those of every
// earlier set under which connections went quiet (one may still bypass
// the queue from then); otherwise a warning says the data phase stays
// queued.
func TestMayQuietAfterEarlierSets(t *testing.T) {
	client := statetrack.Client
	nth := func(n uint32) *rules.Set {
		if n == 0 {
			return rules.Compile(nil)
		}
		return rules.Compile([]rules.Rule{{Name: "d", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: &client, Nth: n}, Action: rules.Action{Type: rules.Drop}, Probability: 1}})
	}
	anyData := rules.Compile([]rules.Rule{{Name: "d", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}}, Action: rules.Action{Type: rules.Drop}, Probability: 1}})
	s := &steering{status: io.Discard}
	if ok, _ := s.mayQuiet(rules.Compile(nil)); ok {
		t.Error("quiet without the bypass installed")
	}
	s.quietInstalled = true
	if ok, w := s.mayQuiet(nth(9)); !ok || w != "" {
		t.Errorf("the first set of nth 9: quiet %v, warning %q", ok, w)
	}
	floor, _ := nth(9).QuietAfter()
	s.quietFloor = &floor
	for _, c := range []struct {
		name string
		set  *rules.Set
		want bool
	}{
		{"nth 5", nth(5), true}, {"nth 9", nth(9), true}, {"nth 12", nth(12), false}, {"any data", anyData, false},
	} {
		ok, w := s.mayQuiet(c.set)
		if ok != c.want {
			t.Errorf("after nth 9, %s: mayQuiet %v, want %v", c.name, ok, c.want)
		}
		if warned := strings.Contains(w, "the data phase stays queued"); warned != (c.name == "nth 12") {
			t.Errorf("after nth 9, %s: warning %q", c.name, w)
		}
	}
	zero, _ := nth(0).QuietAfter()
	s.quietFloor = &zero
	if ok, _ := s.mayQuiet(nth(1)); ok {
		t.Error("after a set without data rules: nth 1 may go quiet")
	}
	if ok, _ := s.mayQuiet(nth(0)); !ok {
		t.Error("after a set without data rules: no data rule may not go quiet")
	}
}
