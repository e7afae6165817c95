package statetrack

import (
	"bytes"
	"net/netip"
	"testing"
	"unsafe"
)

// TestLayout guards the per-connection memory budget (<= 200 bytes per
// tracked connection with the index; see BenchmarkMillionConnections).
func TestLayout(t *testing.T) {
	if n := unsafe.Sizeof(half{}); n != 36 {
		t.Errorf("half is %d bytes, want 36", n)
	}
	if n := unsafe.Sizeof(conn{}); n != 152 {
		t.Errorf("conn is %d bytes, want 152", n)
	}
}

func TestPackKeyRoundTrip(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"198.18.0.1:40000", "198.18.1.1:80"},
		{"198.18.1.1:80", "198.18.0.1:40000"},
		{"[fd00::2]:1", "[fd00::1]:2"},
		{"[::ffff:198.18.0.1]:5", "[::ffff:198.18.0.2]:6"},
		{"198.18.0.1:7", "198.18.0.1:7"},
		{"[fd01::1]:1", "[fd00::2]:1"},
	} {
		src, dst := mustAddrPort(t, c.src), mustAddrPort(t, c.dst)
		k, srcIsA := packKey(src, dst)
		r, rIsA := packKey(dst, src)
		if k != r || (srcIsA == rIsA && src != dst) {
			t.Errorf("%s %s: key depends on direction", c.src, c.dst)
		}
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		if o := bytes.Compare(s16[:], d16[:]); srcIsA != (o < 0 || o == 0 && src.Port() <= dst.Port()) {
			t.Errorf("%s %s: srcIsA = %v, not the order of the bytes", c.src, c.dst, srcIsA)
		}
		a, b := k.endpoints()
		if !srcIsA {
			a, b = b, a
		}
		if a != src || b != dst {
			t.Errorf("%s %s: unpacked %s %s", c.src, c.dst, a, b)
		}
		if k.self() != (src == dst) {
			t.Errorf("%s %s: self() = %v", c.src, c.dst, k.self())
		}
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
