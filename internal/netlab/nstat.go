package netlab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Nstat returns the namespace's absolute SNMP and netstat counters
// ("nstat -asz"), such as TcpOutRsts or TcpExtTCPSynRetrans. history is the
// file nstat keeps its history in: give each caller a private one, so
// concurrent readers do not disturb each other.
func (n *NS) Nstat(history string) (map[string]uint64, error) {
	cmd := n.Command("nstat", "-asz")
	cmd.Env = append(os.Environ(), "NSTAT_HISTORY="+history)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: nstat -asz: %w", n.Name, err)
	}
	counters, err := parseNstat(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	return counters, nil
}

// parseNstat parses nstat's "Name value rate" lines, skipping comments.
func parseNstat(out string) (map[string]uint64, error) {
	counters := make(map[string]uint64)
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("parse nstat line %q: want a name and a value", line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse nstat line %q: %w", line, err)
		}
		counters[f[0]] = v
	}
	return counters, nil
}
