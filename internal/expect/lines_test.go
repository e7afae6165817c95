package expect

import (
	"bytes"
	"testing"
)

func TestWriteLines(t *testing.T) {
	var b bytes.Buffer
	WriteLines(&b, sampleOutcomes(t))
	want := "expect syn-retransmitted: holds: 1 of 1 firings followed, after 1.02s\n" +
		"expect no-stuck-syn-sent: FAILS: longest stay in SYN_SENT 1.021s (" + connName(1) + "); first counter-example " +
		connName(1) + " at 03:04:05.000000: the client stayed in SYN_SENT for 1.021s\n" +
		"expect times-out: skipped: no command ran\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
