package minheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type num int

func (a num) Before(b num) bool { return a < b }

// TestHeap: elements pushed in any order come out in order, with the
// first always at index 0.
func TestHeap(t *testing.T) {
	var h Heap[num]
	r := rand.New(rand.NewPCG(1, 2))
	var want []num
	for range 200 {
		x := num(r.IntN(50))
		h.Push(x)
		want = append(want, x)
	}
	slices.Sort(want)
	for i, w := range want {
		if h[0] != w {
			t.Fatalf("element %d: head %d, want %d", i, h[0], w)
		}
		if got := h.Pop(); got != w {
			t.Fatalf("element %d: popped %d, want %d", i, got, w)
		}
	}
	if len(h) != 0 {
		t.Errorf("%d left, want none", len(h))
	}
}
