package netlabtest

import (
	"path/filepath"
	"testing"
)

// Nstat returns the namespace's absolute SNMP and netstat counters ("nstat
// -asz"), such as TcpRetransSegs or TcpExtTCPSynRetrans. It keeps nstat's
// history file private to the test.
func (n *NS) Nstat(t testing.TB) map[string]uint64 {
	t.Helper()
	counters, err := n.NS.Nstat(filepath.Join(t.TempDir(), "nstat.history"))
	if err != nil {
		t.Fatal(err)
	}
	return counters
}
