package seqnum

import "testing"

func TestLessThanWraps(t *testing.T) {
	cases := []struct {
		v, w Value
		want bool
	}{
		{1, 2, true},
		{2, 1, false},
		{1, 1, false},
		{0xffffffff, 0, true},
		{0, 0xffffffff, false},
		{0xfffffff0, 0x10, true},
		{0x10, 0xfffffff0, false},
	}
	for _, c := range cases {
		if got := c.v.LessThan(c.w); got != c.want {
			t.Errorf("%#x.LessThan(%#x) = %v, want %v", c.v, c.w, got, c.want)
		}
	}
}

func TestInRangeAcrossWrap(t *testing.T) {
	first := Value(0xfffffffe)
	for _, c := range []struct {
		v    Value
		want bool
	}{{0xfffffffd, false}, {0xfffffffe, true}, {0xffffffff, true}, {0, true}, {1, true}, {2, false}} {
		if got := c.v.InWindow(first, 4); got != c.want {
			t.Errorf("%#x.InWindow(%#x, 4) = %v, want %v", c.v, first, got, c.want)
		}
	}
	if got := first.Add(4); got != 2 {
		t.Errorf("Add across wrap = %#x, want 2", got)
	}
	if got := first.Size(2); got != 4 {
		t.Errorf("Size across wrap = %d, want 4", got)
	}
	if !Value(5).LessThanEq(5) || Value(6).LessThanEq(5) {
		t.Error("LessThanEq wrong at equality")
	}
}
