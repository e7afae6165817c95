package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel parses verdict messages as the kernel does and records the
// verdicts: a batch verdict applies to every packet still waiting up to
// its id. A verdict for a packet not waiting is recorded too, so that a
// second verdict shows.
type fakeKernel struct {
	mu       sync.Mutex
	waiting  map[uint32]bool
	verdicts map[uint32][]int
	marks    map[uint32]uint32 // the last mark a verdict set, by packet
	order    []uint32
	writes   int // Write calls
	batches  int // batch messages
	changed  chan struct{}
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{waiting: map[uint32]bool{}, verdicts: map[uint32][]int{}, marks: map[uint32]uint32{},
		changed: make(chan struct{}, 100)}
}

// enqueue records that packet id waits for a verdict.
func (k *fakeKernel) enqueue(id uint32) {
	k.mu.Lock()
	k.waiting[id] = true
	k.mu.Unlock()
}

func (k *fakeKernel) Write(b []byte) (int, error) {
	k.mu.Lock()
	n := len(b)
	k.writes++
	for len(b) > 0 {
		m, err := parseVerdictMsg(b)
		if err != nil {
			k.mu.Unlock()
			return 0, err
		}
		b = b[m.len:]
		ids := []uint32{m.id}
		if m.batch {
			k.batches++
			ids = nil
			for id := range k.waiting {
				if id <= m.id {
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
		}
		for _, id := range ids {
			delete(k.waiting, id)
			k.verdicts[id] = append(k.verdicts[id], int(m.verdict))
			k.order = append(k.order, id)
			if m.hasMark {
				k.marks[id] = m.mark
			}
		}
	}
	k.mu.Unlock()
	select {
	case k.changed <- struct{}{}:
	default:
	}
	return n, nil
}

// verdictMsg is one parsed verdict message.
type verdictMsg struct {
	len            int
	batch, hasMark bool
	id, verdict    uint32
	mark           uint32
	queue          uint16
}

// parseVerdictMsg parses the verdict message at the start of b, as
// nfnetlink_queue would.
func parseVerdictMsg(b []byte) (verdictMsg, error) {
	var m verdictMsg
	if len(b) < nlmsgHdrLen+nfgenMsgLen {
		return m, fmt.Errorf("short message: %d bytes", len(b))
	}
	m.len = int(binary.NativeEndian.Uint32(b))
	if m.len > len(b) || m.len < nlmsgHdrLen+nfgenMsgLen {
		return m, fmt.Errorf("message length %d of %d bytes", m.len, len(b))
	}
	switch typ := binary.NativeEndian.Uint16(b[4:]); typ {
	case msgType(nfqnlMsgVerdict):
	case msgType(nfqnlMsgVerdictBatch):
		m.batch = true
	default:
		return m, fmt.Errorf("message type %#x", typ)
	}
	if f := binary.NativeEndian.Uint16(b[6:]); f != unix.NLM_F_REQUEST {
		return m, fmt.Errorf("flags %#x", f)
	}
	m.queue = binary.BigEndian.Uint16(b[nlmsgHdrLen+2:])
	attrs := b[nlmsgHdrLen+nfgenMsgLen : m.len]
	hasHdr := false
	for len(attrs) >= nlattrLen {
		l := int(binary.NativeEndian.Uint16(attrs))
		if l < nlattrLen || l > len(attrs) {
			return m, fmt.Errorf("attribute length %d", l)
		}
		v := attrs[nlattrLen:l]
		switch binary.NativeEndian.Uint16(attrs[2:]) {
		case nfqaVerdictHdr:
			m.verdict, m.id, hasHdr = binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:]), true
		case nfqaMark:
			m.mark, m.hasMark = binary.BigEndian.Uint32(v), true
		}
		attrs = attrs[align4(l):]
	}
	if !hasHdr {
		return m, errors.New("no verdict header")
	}
	return m, nil
}

// verdict returns the single verdict given for id, failing on none or more.
func (k *fakeKernel) verdict(t *testing.T, id uint32) int {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := len(k.verdicts[id]); n != 1 {
		t.Fatalf("packet %d got %d verdicts %v, want 1", id, n, k.verdicts[id])
	}
	return k.verdicts[id][0]
}

func (k *fakeKernel) has(id uint32) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.verdicts[id]) > 0
}

// countingKernel counts verdict messages and keeps the last one.
type countingKernel struct {
	msgs int
	last verdictMsg
}

func (k *countingKernel) Write(b []byte) (int, error) {
	for n := 0; n < len(b); n += k.last.len {
		m, err := parseVerdictMsg(b[n:])
		if err != nil {
			return 0, err
		}
		k.msgs++
		k.last = m
	}
	return len(b), nil
}

// writerCase flushes entries into a fake kernel where ids wait.
func writerCase(t *testing.T, waiting []uint32, quietOK, batchOK bool, es ...verdictEntry) *fakeKernel {
	t.Helper()
	k := newFakeKernel()
	for _, id := range waiting {
		k.enqueue(id)
	}
	w := newVerdictWriter(100, k)
	for _, e := range es {
		w.add(e)
	}
	if err := w.flush(quietOK, batchOK); err != nil {
		t.Fatal(err)
	}
	if len(w.entries) != 0 {
		t.Error("entries left after flush")
	}
	return k
}

func accept(id uint32, mark uint32) verdictEntry {
	return verdictEntry{id: id, verdict: verdictAccept, mark: mark, setMark: mark != 0}
}

func TestWriterBatchesRisingAccepts(t *testing.T) {
	k := writerCase(t, []uint32{1, 2, 3, 5}, true, true, accept(1, 0), accept(2, 0), accept(3, 0), accept(5, 0))
	if k.batches != 1 || k.writes != 1 {
		t.Errorf("%d batch messages in %d writes, want 1 in 1", k.batches, k.writes)
	}
	for _, id := range []uint32{1, 2, 3, 5} {
		if v := k.verdict(t, id); v != verdictAccept {
			t.Errorf("packet %d: verdict %d", id, v)
		}
	}
}

func TestWriterKeepsOrderAndVerdicts(t *testing.T) {
	// a drop splits the run; a different mark splits it; ids going down
	// (a held packet released after later ones) are never batched.
	k := writerCase(t, []uint32{1, 2, 3, 4, 5, 6, 7, 8}, true, true,
		accept(1, VerdictMark), accept(2, VerdictMark),
		verdictEntry{id: 3, verdict: verdictDrop},
		accept(4, VerdictMark), accept(5, VerdictMark|0x5),
		accept(7, VerdictMark), accept(8, VerdictMark), accept(6, VerdictMark))
	want := map[uint32]struct {
		v    int
		mark uint32
	}{
		1: {verdictAccept, VerdictMark}, 2: {verdictAccept, VerdictMark}, 3: {verdictDrop, 0},
		4: {verdictAccept, VerdictMark}, 5: {verdictAccept, VerdictMark | 0x5},
		6: {verdictAccept, VerdictMark}, 7: {verdictAccept, VerdictMark}, 8: {verdictAccept, VerdictMark},
	}
	for id, w := range want {
		if v := k.verdict(t, id); v != w.v || k.marks[id] != w.mark {
			t.Errorf("packet %d: verdict %d mark %#x, want %d %#x", id, v, k.marks[id], w.v, w.mark)
		}
	}
	// 7 and 8 must not be one batch: it would take 6, still waiting, along.
	if k.batches != 1 {
		t.Errorf("%d batch messages, want 1 (packets 1-2)", k.batches)
	}
}

func TestWriterWithoutBatches(t *testing.T) {
	k := writerCase(t, []uint32{1, 2, 3}, true, false, accept(2, 0), accept(3, 0))
	if k.batches != 0 {
		t.Errorf("%d batch messages while a packet is held", k.batches)
	}
	if k.has(1) {
		t.Error("the held packet got a verdict")
	}
}

func TestWriterQuietOnlyOnLastOfConnection(t *testing.T) {
	q := func(id uint32, conn uint64) verdictEntry {
		return verdictEntry{id: id, verdict: verdictAccept, mark: VerdictMark, setMark: true, quiet: true, conn: conn}
	}
	k := writerCase(t, []uint32{1, 2, 3, 4}, true, true, q(1, 10), q(2, 20), q(3, 10), accept(4, VerdictMark))
	for id, mark := range map[uint32]uint32{1: VerdictMark, 2: VerdictMark | QuietMark, 3: VerdictMark | QuietMark, 4: VerdictMark} {
		k.verdict(t, id)
		if k.marks[id] != mark {
			t.Errorf("packet %d: mark %#x, want %#x", id, k.marks[id], mark)
		}
	}
	k = writerCase(t, []uint32{1}, false, true, q(1, 10))
	if k.marks[1] != VerdictMark {
		t.Errorf("burst not drained: mark %#x, want %#x (no quiet)", k.marks[1], VerdictMark)
	}
}

// TestWriterAnchorKeepsQuiet: the quiet entries of a quiet close
// (anchors) keep their quiet when later quiet entries of their
// connection follow in the burst (after a first FIN only the FIN's
// verdict sets the connection's quiet bit, and any verdict without it
// clears it), and lose it, declined, when a later one is not quiet; an
// earlier quiet entry of another phase is superseded by a later quiet one.
func TestWriterAnchorKeepsQuiet(t *testing.T) {
	q := func(id uint32, conn uint64, anchor bool) verdictEntry {
		return verdictEntry{id: id, verdict: verdictAccept, mark: VerdictMark, setMark: true, quiet: true, anchor: anchor, conn: conn}
	}
	k := newFakeKernel()
	for id := range uint32(7) {
		k.enqueue(id + 1)
	}
	w := newVerdictWriter(100, k)
	for _, e := range []verdictEntry{q(1, 10, true), q(2, 10, true), q(3, 10, true), q(4, 20, true), q(5, 30, false), q(6, 30, false)} {
		if w.add(e) {
			t.Errorf("packet %d: add declined an earlier quiet verdict", e.id)
		}
	}
	notQuiet := accept(7, VerdictMark)
	notQuiet.conn = 20
	if !w.add(notQuiet) {
		t.Error("a verdict without quiet after connection 20's quiet FIN: add did not report the decline")
	}
	if err := w.flush(true, true); err != nil {
		t.Fatal(err)
	}
	vq := VerdictMark | QuietMark
	for id, mark := range map[uint32]uint32{1: vq, 2: vq, 3: vq, 4: VerdictMark, 5: VerdictMark, 6: vq, 7: VerdictMark} {
		k.verdict(t, id)
		if k.marks[id] != mark {
			t.Errorf("packet %d: mark %#x, want %#x", id, k.marks[id], mark)
		}
	}
	if want := []uint64{10, 10, 10, 30}; !slices.Equal(w.quieted, want) || len(w.declined) != 0 {
		t.Errorf("quieted %v, declined %v; want %v and none", w.quieted, w.declined, want)
	}
}

// TestWriterReportsDeclined: the quiet entries of a burst that did not
// read the queue dry, or whose write failed, are reported declined.
func TestWriterReportsDeclined(t *testing.T) {
	q := verdictEntry{id: 1, verdict: verdictAccept, mark: VerdictMark, setMark: true, quiet: true, anchor: true, conn: 10}
	k := newFakeKernel()
	k.enqueue(1)
	w := newVerdictWriter(100, k)
	w.add(q)
	if err := w.flush(false, true); err != nil {
		t.Fatal(err)
	}
	if k.marks[1] != VerdictMark || len(w.quieted) != 0 || !slices.Equal(w.declined, []uint64{10}) {
		t.Errorf("burst not drained: mark %#x, quieted %v, declined %v; want %#x, none, [10]", k.marks[1], w.quieted, w.declined, VerdictMark)
	}
	w = newVerdictWriter(100, failingKernel{})
	w.add(q)
	if err := w.flush(true, true); err == nil {
		t.Fatal("a failed write reported no error")
	}
	if len(w.quieted) != 0 || !slices.Equal(w.declined, []uint64{10}) {
		t.Errorf("failed write: quieted %v, declined %v; want none and [10]", w.quieted, w.declined)
	}
}

// failingKernel refuses every write.
type failingKernel struct{}

func (failingKernel) Write([]byte) (int, error) { return 0, errors.New("refused") }

func BenchmarkVerdictWriter(b *testing.B) {
	w := newVerdictWriter(100, &countingKernel{})
	b.ReportAllocs()
	id := uint32(0)
	for b.Loop() {
		for range 32 {
			id++
			w.add(verdictEntry{id: id, verdict: verdictAccept, mark: VerdictMark, setMark: true, conn: uint64(id % 4), quiet: true})
		}
		if err := w.flush(true, true); err != nil {
			b.Fatal(err)
		}
	}
}
