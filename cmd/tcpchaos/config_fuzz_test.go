package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes to the config loader as YAML, TOML
// and JSON files, through viper and config.Decode as `run` reads them. It
// must never panic, and every failure must be a usage error (exit 2) that
// names a key path, the file or the parser's complaint.
func FuzzLoadConfig(f *testing.F) {
	f.Add("yaml", "rules:\n  - match: {packet: syn, nth: 1}\n    action: drop\n")
	f.Add("yaml", "intercept: {ports: [8080, 70000], hosts: [fd00::/8, 10.0.0.300/8]}\n")
	f.Add("toml", "seed = 3\n[[rules]]\nname = \"x\"\naction = { delay = \"300ms\", jitter = \"1s\" }\n")
	f.Add("json", `{"rules":[{"match":{"packet":["fin"],"closer":"passive"},"action":{"duplicate":2,"after":"1s"},"probability":0.5}]}`)
	f.Add("yaml", "tracker: {msl: -1s, max-connections: x}\n")
	f.Add("yaml", "rules: [{name: r, action: drop}]\nexpect:\n  - {name: a, follows: {rule: r, packet: syn, within: 2s}}\n  - {name: b, never: {state: LAST_ACK, longer-than: 5s}}\n  - {name: c, exit: nonzero}\n")
	files, _ := filepath.Glob("../../configs/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add("yaml", string(data))
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, ext, content string) {
		switch ext {
		case "yaml", "toml", "json":
		default:
			return
		}
		path := filepath.Join(dir, "c."+ext)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runCLI(t, "validate", "-c", path)
		if err == nil {
			if !strings.Contains(out, ": ok\n") {
				t.Fatalf("validate succeeded without its ok line:\n%s", out)
			}
			return
		}
		var ue usageError
		if !errors.As(err, &ue) {
			t.Fatalf("a bad config gave %T %v, want a usage error", err, err)
		}
	})
}
