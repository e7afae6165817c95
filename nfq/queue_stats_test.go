package nfq

import (
	"testing"
)

func TestParseKernelStats(t *testing.T) {
	data := []byte("  100   4242     2 2 65531     0     3    17789  1\n" +
		"  101 4253733062     0 2   128     5     0        9  1\n")
	ks, ok := parseKernelStats(data, 100)
	want := KernelStats{PortID: 4242, Waiting: 2, CopyMode: 2, CopyRange: 65531, UserDropped: 3, IDSequence: 17789}
	if !ok || ks != want {
		t.Errorf("queue 100: %+v %v, want %+v", ks, ok, want)
	}
	if _, ok := parseKernelStats(data, 102); ok {
		t.Error("found queue 102")
	}
	if ks, ok := parseKernelStats(data, 101); !ok || ks.PortID != 4253733062 || ks.QueueDropped != 5 {
		t.Errorf("queue 101 (autobound port id): %+v %v", ks, ok)
	}
	s := Stats{Received: 17780, Kernel: want}
	if u := s.Unreceived(); u != 9 {
		t.Errorf("unreceived %d, want 9", u)
	}
	s = Stats{Received: 1<<32 + 5, Kernel: KernelStats{IDSequence: 7}}
	if u, q := s.Unreceived(), s.Queued(); u != 2 || q != 1<<32+7 {
		t.Errorf("across the id wrap: unreceived %d, queued %d; want 2 and %d", u, q, uint64(1<<32+7))
	}
	s.KernelErr = errNoKernelLine
	if q := s.Queued(); q != 0 {
		t.Errorf("queued %d without the kernel's line, want 0", q)
	}
}
