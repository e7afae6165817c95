package statetrack

import "testing"

// TestPastSaturates: a count at its ceiling is past only lower bounds,
// since every later packet of that kind has the same nth.
func TestPastSaturates(t *testing.T) {
	var h half
	h.ctl[Keepalive-1] = 255
	if h.past(Keepalive, 255) || !h.past(Keepalive, 254) {
		t.Errorf("keepalive count 255: past 255 %v, past 254 %v; want false, true", h.past(Keepalive, 255), h.past(Keepalive, 254))
	}
	h.data = 9
	if !h.past(Data, 9) || h.past(Data, 10) {
		t.Errorf("data count 9: past 9 %v, past 10 %v; want true, false", h.past(Data, 9), h.past(Data, 10))
	}
	h.data = ^uint32(0)
	if h.past(Data, ^uint32(0)) {
		t.Error("a data count at its ceiling is past a bound as high")
	}
}
