// Package minheap is a binary min-heap of elements that order themselves
// (container/heap, without the boilerplate of its interface at each use).
package minheap

import "container/heap"

// Ordered is an element type of a Heap: a.Before(b) when a comes out
// first.
type Ordered[T any] interface{ Before(T) bool }

// Heap holds its elements in heap order: h[0] is the first to come out
// (when len(h) > 0). The zero value is an empty heap.
type Heap[T Ordered[T]] []T

// Push adds x.
func (h *Heap[T]) Push(x T) { heap.Push((*items[T])(h), x) }

// Pop removes and returns the first element; the heap must not be empty.
func (h *Heap[T]) Pop() T { return heap.Pop((*items[T])(h)).(T) }

// items is a Heap as container/heap's Interface.
type items[T Ordered[T]] []T

func (s items[T]) Len() int           { return len(s) }
func (s items[T]) Less(i, j int) bool { return s[i].Before(s[j]) }
func (s items[T]) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s *items[T]) Push(x any)        { *s = append(*s, x.(T)) }
func (s *items[T]) Pop() any {
	old := *s
	x := old[len(old)-1]
	*s = old[:len(old)-1]
	return x
}
