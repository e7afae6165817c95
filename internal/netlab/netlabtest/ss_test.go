package netlabtest

import (
	"net/netip"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestParseSS(t *testing.T) {
	out := `LISTEN     0      4096         0.0.0.0:8080        0.0.0.0:*
ESTAB      0      0          198.18.1.2:40312   198.19.2.2:8080
TIME-WAIT  0      0       [fd00:1::2]:40314  [fd00:2::2]:8080
SYN-SENT   0      1     127.0.0.53%lo:53              *:*
`
	got, err := parseSS(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{statetrack.Listen, netip.MustParseAddrPort("0.0.0.0:8080"), netip.MustParseAddrPort("0.0.0.0:0")},
		{statetrack.Established, netip.MustParseAddrPort("198.18.1.2:40312"), netip.MustParseAddrPort("198.19.2.2:8080")},
		{statetrack.TimeWait, netip.MustParseAddrPort("[fd00:1::2]:40314"), netip.MustParseAddrPort("[fd00:2::2]:8080")},
		{statetrack.SynSent, netip.MustParseAddrPort("127.0.0.53:53"), netip.AddrPortFrom(netip.Addr{}, 0)},
	}
	if len(got) != len(want) {
		t.Fatalf("parseSS = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"ESTAB 0 0 1.2.3.4:1\n", "WEIRD 0 0 1.2.3.4:1 1.2.3.4:2\n", "ESTAB 0 0 1.2.3.4:x 1.2.3.4:2\n", "ESTAB 0 0 nohost:1 1.2.3.4:2\n"} {
		if _, err := parseSS(bad); err == nil {
			t.Errorf("parseSS(%q) succeeded, want an error", bad)
		}
	}
}
