package oracle

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseCTEvent(t *testing.T) {
	cases := []struct {
		line             string
		typ, state, conn string
		id               uint64
		sec, micros      int64
	}{
		{"[1796154758.206678]\t    [NEW] tcp      6 120 SYN_SENT src=198.18.1.2 dst=198.19.2.2 sport=56840 dport=8080 [UNREPLIED] src=198.19.2.2 dst=198.18.1.2 sport=8080 dport=56840 id=3860085856",
			"NEW", "SYN_SENT", "198.18.1.2:56840->198.19.2.2:8080", 3860085856, 1796154758, 206678},
		{"[1796154758.221490]\t [UPDATE] tcp      6 2 TIME_WAIT src=198.18.1.2 dst=198.19.2.2 sport=56840 dport=8080 src=198.19.2.2 dst=198.18.1.2 sport=8080 dport=56840 [ASSURED] id=7",
			"UPDATE", "TIME_WAIT", "198.18.1.2:56840->198.19.2.2:8080", 7, 1796154758, 221490},
		{"[1796154801.98]\t[DESTROY] tcp      6 CLOSE src=fd00:1::2 dst=fd00:2::2 sport=40000 dport=8083 src=fd00:2::2 dst=fd00:1::2 sport=8083 dport=40000 [ASSURED] id=9",
			"DESTROY", "CLOSE", "[fd00:1::2]:40000->[fd00:2::2]:8083", 9, 1796154801, 980000},
		{"[1796154801.983688]\t[DESTROY] tcp      6 src=198.18.1.2 dst=198.19.2.2 sport=1 dport=2 src=198.19.2.2 dst=198.18.1.2 sport=2 dport=1 id=10",
			"DESTROY", "", "198.18.1.2:1->198.19.2.2:2", 10, 1796154801, 983688},
	}
	for _, c := range cases {
		e, err := ParseCTEvent(c.line)
		if err != nil {
			t.Errorf("ParseCTEvent(%q): %v", c.line, err)
			continue
		}
		if e.Type != c.typ || e.State != c.state || e.Conn() != c.conn || e.ID != c.id || !e.Time.Equal(time.Unix(c.sec, c.micros*1000)) {
			t.Errorf("ParseCTEvent(%q) = %+v (conn %s), want %s %s %s id %d at %d.%06d", c.line, e, e.Conn(), c.typ, c.state, c.conn, c.id, c.sec, c.micros)
		}
	}
	for _, bad := range []string{
		"",
		"conntrack v1.4.7 (conntrack-tools): 12 flow events have been shown.",
		"[x] [NEW] tcp 6 120 SYN_SENT src=198.18.1.2 dst=198.19.2.2 sport=1 dport=2 id=1",
		"[1.5] [NEW] udp 17 30 src=198.18.1.2 dst=198.19.2.2 sport=1 dport=2 id=1",
		"[1.5] [NEW] tcp 6 120 SYN_SENT src=198.18.1.2 dst=198.19.2.2 sport=1 dport=2",
		"[1.5] [NEW] tcp 6 120 SYN_SENT src=198.18.1.2 dst=198.19.2.2 sport=99999 dport=2 id=1",
	} {
		if e, err := ParseCTEvent(bad); err == nil {
			t.Errorf("ParseCTEvent(%q) = %+v, want an error", bad, e)
		}
	}
}

func TestCTEventConnMatchesTrackerSpelling(t *testing.T) {
	e := CTEvent{Src: netip.MustParseAddrPort("[fd00:1::2]:40312"), Dst: netip.MustParseAddrPort("[fd00:2::2]:8080")}
	if got, want := e.Conn(), "[fd00:1::2]:40312->[fd00:2::2]:8080"; got != want {
		t.Errorf("Conn() = %q, want %q", got, want)
	}
}
