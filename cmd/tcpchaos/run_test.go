//go:build linux

package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/nfq"
)

// TestWarnMarks: marks left in conntrack (nfq.ErrMarksLeft) are printed
// as a warning and do not fail the run or the cleanup; any other error,
// the rules' failures with the marks' among them, is returned as it is.
func TestWarnMarks(t *testing.T) {
	var w strings.Builder
	marks := fmt.Errorf("remove interception: %w: list connections: refused", nfq.ErrMarksLeft)
	if err := warnMarks(&w, marks); err != nil {
		t.Errorf("marks left only: %v, want nil", err)
	}
	if want := "tcpchaos: warning: " + marks.Error() + "\n"; w.String() != want {
		t.Errorf("printed %q, want %q", w.String(), want)
	}
	w.Reset()
	rules := errors.New("iptables: delete chain TCPCHAOS: busy")
	if err := warnMarks(&w, rules); err != rules || w.Len() != 0 {
		t.Errorf("a rules failure: %v, printed %q; want it returned, nothing printed", err, w.String())
	}
	if err := warnMarks(&w, nil); err != nil || w.Len() != 0 {
		t.Errorf("no error: %v, printed %q", err, w.String())
	}
}
