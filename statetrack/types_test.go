package statetrack_test

import (
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestParseInvertsString: every value's spelling parses back to it, and a
// spelling that is none fails.
func TestParseInvertsString(t *testing.T) {
	for _, s := range []statetrack.Side{statetrack.Client, statetrack.Server} {
		if got, err := statetrack.ParseSide(s.String()); err != nil || got != s {
			t.Errorf("ParseSide(%q) = %v, %v", s, got, err)
		}
	}
	for _, c := range []statetrack.Closer{statetrack.NoCloser, statetrack.Active, statetrack.Passive} {
		if got, err := statetrack.ParseCloser(c.String()); err != nil || got != c {
			t.Errorf("ParseCloser(%q) = %v, %v", c, got, err)
		}
	}
	if rs := statetrack.GoneReasons(); len(rs) != 4 || rs[0] != statetrack.TimeWaitExpired || rs[3] != statetrack.Replaced {
		t.Errorf("GoneReasons() = %v, want time-wait-expired to replaced", rs)
	}
	for f := range 256 {
		fl := statetrack.Flags(f)
		if got, err := statetrack.ParseFlags(fl.String()); err != nil || got != fl {
			t.Errorf("ParseFlags(%q) = %v, %v, want %08b", fl, got, err, f)
		}
	}
	if f, err := statetrack.ParseFlags(".S"); err != nil || f != statetrack.SYN|statetrack.ACK {
		t.Errorf(`ParseFlags(".S") = %v, %v, want S.`, f, err)
	}
	for _, bad := range []func() error{
		func() error { _, err := statetrack.ParseSide("Client"); return err },
		func() error { _, err := statetrack.ParseCloser("none"); return err },
		func() error { _, err := statetrack.ParseFlags(""); return err },
		func() error { _, err := statetrack.ParseFlags("SS"); return err },
		func() error { _, err := statetrack.ParseFlags("S.x"); return err },
	} {
		if bad() == nil {
			t.Error("a bad spelling parsed")
		}
	}
}
