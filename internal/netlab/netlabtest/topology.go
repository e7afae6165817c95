package netlabtest

import (
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// Topology is netlab's client, router and server (addresses and interface
// names as netlab.Topology documents them), with the namespaces as test
// namespaces.
type Topology struct {
	*netlab.Topology
	Client, Router, Server *NS
}

// NewTopology builds a client, a router and a server, skipping or failing
// the test through RequirePrivileged when it cannot. t.Cleanup removes it
// all, with any process still running in its namespaces.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	RequirePrivileged(t)
	tp, err := newLab(t).Topology()
	if err != nil {
		t.Fatal(err)
	}
	return &Topology{Topology: tp, Client: &NS{tp.Client}, Router: &NS{tp.Router}, Server: &NS{tp.Server}}
}
