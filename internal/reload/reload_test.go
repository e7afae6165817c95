package reload

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/config"
)

func decode(t *testing.T, tree map[string]any) config.Config {
	t.Helper()
	c, err := config.Decode(tree)
	if err != nil {
		t.Fatalf("decode %v: %v", tree, err)
	}
	return c
}

func base() map[string]any {
	return map[string]any{
		"intercept": map[string]any{"mode": "forward", "ports": []any{8080}, "queue": 100},
		"tracker":   map[string]any{"msl": "30s"},
		"rules": []any{
			map[string]any{"name": "lose-first-syn", "match": map[string]any{"packet": "syn", "nth": 1}, "action": "drop"},
		},
	}
}

func TestDiffLiveChanges(t *testing.T) {
	old := decode(t, base())
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want Change
	}{
		{"same", func(map[string]any) {}, Change{}},
		{"rule action", func(m map[string]any) {
			m["rules"].([]any)[0].(map[string]any)["action"] = map[string]any{"delay": "1s"}
		}, Change{Rules: true}},
		{"rule added", func(m map[string]any) {
			m["rules"] = append(m["rules"].([]any), map[string]any{"name": "x", "match": map[string]any{"packet": "data"}, "action": "drop"})
		}, Change{Rules: true}},
		{"ports", func(m map[string]any) { m["intercept"].(map[string]any)["ports"] = []any{8080, 9090} }, Change{Intercept: true}},
		{"hosts", func(m map[string]any) { m["intercept"].(map[string]any)["hosts"] = []any{"198.18.0.0/15"} }, Change{Intercept: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := base()
			tc.edit(tree)
			got, err := Diff(old, decode(t, tree))
			if err != nil {
				t.Fatalf("Diff: %v", err)
			}
			if got != tc.want || got.None() != (tc.want == Change{}) {
				t.Errorf("Diff = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDiffRefusesWhatNeedsARestart(t *testing.T) {
	old := decode(t, base())
	tree := base()
	tree["intercept"].(map[string]any)["mode"] = "local"
	tree["intercept"].(map[string]any)["queue"] = 200
	tree["intercept"].(map[string]any)["queue-length"] = 64
	tree["tracker"].(map[string]any)["max-connections"] = 10
	tree["seed"] = 7
	_, err := Diff(old, decode(t, tree))
	var re *RestartError
	if !errors.As(err, &re) {
		t.Fatalf("Diff error = %v, want a *RestartError", err)
	}
	if want := []string{"intercept.mode", "intercept.queue", "intercept.queue-length", "tracker.max-connections", "seed"}; !reflect.DeepEqual(re.Keys, want) {
		t.Errorf("keys %v, want %v", re.Keys, want)
	}
	if want := "intercept.mode, intercept.queue, intercept.queue-length, tracker.max-connections, seed cannot change in a running instance (restart tcpchaos run to apply it)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
