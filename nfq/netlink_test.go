package nfq

import (
	"testing"
)

func TestParsePacket(t *testing.T) {
	pkt := tcpSpec{ack: true, payload: payloadOf(100)}.build(t)
	var m packetMsg
	msg := packetMessage(42, 0x1234, pkt[:60], len(pkt))
	if !parsePacket(msg[nlmsgHdrLen:], &m) {
		t.Fatal("no packet id")
	}
	if m.id != 42 || m.mark != 0x1234 || m.wireLen != len(pkt) || string(m.payload) != string(pkt[:60]) {
		t.Errorf("parsed id %d mark %#x wire %d payload %d bytes", m.id, m.mark, m.wireLen, len(m.payload))
	}
	msg = packetMessage(7, 0, pkt, 0)
	if !parsePacket(msg[nlmsgHdrLen:], &m) || m.mark != 0 || m.wireLen != len(pkt) || len(m.payload) != len(pkt) {
		t.Errorf("whole packet: %+v", m)
	}
	for _, bad := range [][]byte{nil, {0, 0}, msg[nlmsgHdrLen : nlmsgHdrLen+6]} {
		if parsePacket(bad, &m) {
			t.Errorf("parsed %x", bad)
		}
	}
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
