package statetrack

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
)

// tupleKey is the packed, direction-free 4-tuple of a connection: address
// A (16 bytes, IPv4 as IPv4-mapped), address B, port A, port B (big
// endian), and the address family (4 or 6). A is the lesser endpoint. It is
// half the size of a Key, which matters at a million connections.
type tupleKey [37]byte

const famOff = 36

// packKey packs the tuple of a segment from src to dst and reports whether
// src is endpoint A. An IPv6 zone is not part of the key.
func packKey(src, dst netip.AddrPort) (k tupleKey, srcIsA bool) {
	s, d := src.Addr().As16(), dst.Addr().As16()
	// The addresses compare as bytes.Compare would, a word at a time.
	sh, dh := binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(d[:8])
	sl, dl := binary.BigEndian.Uint64(s[8:]), binary.BigEndian.Uint64(d[8:])
	srcIsA = sh < dh || sh == dh && (sl < dl || sl == dl && src.Port() <= dst.Port())
	a, b, pa, pb := s, d, src.Port(), dst.Port()
	if !srcIsA {
		a, b, pa, pb = d, s, dst.Port(), src.Port()
	}
	copy(k[0:16], a[:])
	copy(k[16:32], b[:])
	binary.BigEndian.PutUint16(k[32:34], pa)
	binary.BigEndian.PutUint16(k[34:36], pb)
	k[famOff] = 6
	if src.Addr().Is4() {
		k[famOff] = 4
	}
	return k, srcIsA
}

// endpoints unpacks the key's two endpoints A and B.
func (k *tupleKey) endpoints() (a, b netip.AddrPort) {
	addr := func(b []byte) netip.Addr {
		if k[famOff] == 4 {
			return netip.AddrFrom4([4]byte(b[12:16]))
		}
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.AddrPortFrom(addr(k[0:16]), binary.BigEndian.Uint16(k[32:34])),
		netip.AddrPortFrom(addr(k[16:32]), binary.BigEndian.Uint16(k[34:36]))
}

// self reports whether both endpoints are one socket (a self-connect).
func (k *tupleKey) self() bool {
	return [16]byte(k[0:16]) == [16]byte(k[16:32]) && k[32] == k[34] && k[33] == k[35]
}

// none marks the end of an intrusive list or hash chain.
const none int32 = -1

// conn is one tracked connection: 152 bytes, linked into the hash index by
// hnext, into the activity (LRU) list and, while an endpoint sits in
// TIME_WAIT, into the TIME_WAIT list, all by slab index.
type conn struct {
	key   tupleKey
	flags connFlags
	// gen is the slot's generation: the high half of the ConnID. It changes
	// every time the slot is freed, so stale ConnIDs do not match.
	gen   uint32
	hnext int32
	// link holds the slot's places in the lists: link[activityLinks] in
	// the lru or the quiet list (or, while free, the free list: next only),
	// link[timeWaitLinks] in the TIME_WAIT list.
	link [2]links
	// last is the time of the last packet observed or delivered, twAt the
	// time an endpoint last entered TIME_WAIT (both Unix nanoseconds).
	last, twAt int64
	// h holds the half-connections indexed by Side. A self-connect uses
	// h[Client] only.
	h [2]half
}

type connFlags uint16

const (
	inUse connFlags = 1 << iota
	clientIsB
	selfConn
	midstream
	inTimeWait
	// quiet: the connection's data phase (or third ACK, or close)
	// bypasses the tracker (see Tracker.Quiet); the slot is on the quiet
	// list, not the lru list.
	quiet
	// assumedAck: the connection went quiet after its SYN-ACK, and the
	// tracker took the client's third ACK as delivered (a quiet
	// handshake, see Tracker.Quiet) with no packet of it observed since.
	assumedAck
	// quietClosing: the connection's first FIN was let go quiet (a quiet
	// close, see Tracker.QuietClosing) and no FIN, RST or SYN of it has
	// been observed since.
	quietClosing
	// quietPending: the verdict of the connection's last observed packet
	// asks to let it go quiet (Tracker.Quieting) and has been neither
	// written (Tracker.Quiet) nor declined (Tracker.QuietDeclined).
	quietPending
)

// ends returns the sender's and the receiver's halves for a packet from
// side from: the same half twice for a self-connect.
func (c *conn) ends(from Side) (s, r *half) {
	if c.flags&selfConn != 0 {
		return &c.h[Client], &c.h[Client]
	}
	s, r = &c.h[Client], &c.h[Server]
	if from == Server {
		s, r = r, s
	}
	return s, r
}

// states returns both endpoints' states.
func (c *conn) states() [2]State {
	if c.flags&selfConn != 0 {
		return [2]State{c.h[Client].state, c.h[Client].state}
	}
	return [2]State{c.h[Client].state, c.h[Server].state}
}

// sideOf returns the side of the endpoint that is A in the key (or B).
func (c *conn) sideOf(isA bool) Side {
	if c.flags&selfConn != 0 || isA != (c.flags&clientIsB != 0) {
		return Client
	}
	return Server
}

// clientServer returns the connection's endpoints as the client sees them.
func (c *conn) clientServer() (client, server netip.AddrPort) {
	a, b := c.key.endpoints()
	if c.flags&clientIsB != 0 {
		return b, a
	}
	return a, b
}

// The slab is allocated in pages of pageSize connections: it grows
// without copying (no latency spike on the packet path) and without the
// slack of a doubling slice.
const (
	pageBits = 12
	pageSize = 1 << pageBits
	pageMask = pageSize - 1
)

// at returns the connection in slot i.
func (t *Tracker) at(i int32) *conn { return &t.pages[uint32(i)>>pageBits][i&pageMask] }

// A ConnID is the slot's generation in its high 32 bits, and in its low
// 32 bits the tracker's shard (Config.Shard) above the slot index: with S
// shards the top bits.Len(S-1) bits are the shard's, the others the slot's,
// which bounds MaxConnections.

// shardBits returns how many bits of a ConnID's low half name one of
// shards shards (none for one).
func shardBits(shards int) int { return bits.Len(uint(max(shards, 1) - 1)) }

// MaxConnectionsFor returns the largest Config.MaxConnections that
// shards trackers side by side allow (Config.Shards): 2^31 − 1 for one
// or two (the count of slots in use is an int32), 2^30 for three or four,
// 2^29 for five to eight, ….
func MaxConnectionsFor(shards int) int {
	return int(min(uint64(1)<<(32-shardBits(shards)), math.MaxInt32))
}

// id returns the connection's ConnID: generation, shard and slab index.
func (t *Tracker) id(i int32) uint64 { return uint64(t.at(i).gen)<<32 | uint64(t.shard|uint32(i)) }

// byID returns the slot of a live connection with ConnID id (none for
// the ConnID of another shard's).
func (t *Tracker) byID(id uint64) (int32, bool) {
	low := uint32(id)
	slot := low & t.slotMask
	if id == 0 || low&^t.slotMask != t.shard || slot >= uint32(t.used) {
		return none, false
	}
	i := int32(slot)
	if c := t.at(i); c.flags&inUse == 0 || c.gen != uint32(id>>32) {
		return none, false
	}
	return i, true
}

// hash returns the index key of k: 32 bits of a seeded hash, which halves
// the index's size; the chains resolve the collisions.
func (t *Tracker) hash(k *tupleKey) uint32 { return uint32(maphash.Bytes(t.seed, k[:])) }

// find returns the slab index of the connection with key k, or none.
func (t *Tracker) find(h uint32, k *tupleKey) int32 {
	i, ok := t.index[h]
	if !ok {
		return none
	}
	for ; i != none; i = t.at(i).hnext {
		if t.at(i).key == *k {
			return i
		}
	}
	return none
}

// alloc takes a free slot for key k (hash h), links it into the index and
// at the front of the activity list, and returns it zeroed but for its
// links, key, generation and time.
func (t *Tracker) alloc(h uint32, k *tupleKey, now int64) int32 {
	var i int32
	if t.free != none {
		i = t.free
		t.free = t.at(i).link[activityLinks].next
	} else {
		if t.used&pageMask == 0 {
			t.pages = append(t.pages, new([pageSize]conn))
		}
		i = t.used
		t.used++
		t.at(i).gen = 1
	}
	c := t.at(i)
	*c = conn{key: *k, flags: inUse, gen: c.gen, last: now, link: [2]links{{none, none}, {none, none}}}
	c.hnext = none
	if j, ok := t.index[h]; ok {
		c.hnext = j
	}
	t.index[h] = i
	t.pushFront(&t.lru, i)
	t.n++
	return i
}

// release unlinks slot i from the index and the lists and frees it.
func (t *Tracker) release(i int32) {
	c := t.at(i)
	h := t.hash(&c.key)
	if head := t.index[h]; head == i {
		if c.hnext == none {
			delete(t.index, h)
		} else {
			t.index[h] = c.hnext
		}
	} else {
		for j := head; j != none; j = t.at(j).hnext {
			if t.at(j).hnext == i {
				t.at(j).hnext = c.hnext
				break
			}
		}
	}
	t.unlink(t.listOf(c), i)
	t.twUnlink(i)
	c.flags = 0
	if c.gen++; c.gen == 0 {
		c.gen = 1
	}
	c.link[activityLinks].next = t.free
	t.free = i
	t.n--
}

// linkKind selects one of a slot's two pairs of list links.
type linkKind uint8

const (
	activityLinks linkKind = iota // the lru, quiet and free lists
	timeWaitLinks                 // the TIME_WAIT list
)

// links are a slot's neighbours in one list, by slab index.
type links struct{ prev, next int32 }

// list is a doubly linked list of slots threaded through their links of
// one kind. The activity lists (lru, quiet) run from the most recently
// active slot at head to the least at tail; the TIME_WAIT list from the
// earliest deadline at head to the latest at tail.
type list struct {
	head, tail int32
	kind       linkKind
}

func newList(kind linkKind) list { return list{head: none, tail: none, kind: kind} }

// listOf returns the activity list connection c is on.
func (t *Tracker) listOf(c *conn) *list {
	if c.flags&quiet != 0 {
		return &t.quiet
	}
	return &t.lru
}

func (t *Tracker) pushFront(l *list, i int32) {
	n := &t.at(i).link[l.kind]
	n.prev, n.next = none, l.head
	if l.head != none {
		t.at(l.head).link[l.kind].prev = i
	} else {
		l.tail = i
	}
	l.head = i
}

func (t *Tracker) pushBack(l *list, i int32) {
	n := &t.at(i).link[l.kind]
	n.prev, n.next = l.tail, none
	if l.tail != none {
		t.at(l.tail).link[l.kind].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (t *Tracker) unlink(l *list, i int32) {
	n := &t.at(i).link[l.kind]
	if n.prev != none {
		t.at(n.prev).link[l.kind].next = n.next
	} else {
		l.head = n.next
	}
	if n.next != none {
		t.at(n.next).link[l.kind].prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = none, none
}

// touch records activity on slot i at now, moving it to the front of its
// activity list.
func (t *Tracker) touch(i int32, now int64) {
	c := t.at(i)
	c.last = now
	if l := t.listOf(c); l.head != i {
		t.unlink(l, i)
		t.pushFront(l, i)
	}
}

// setQuiet moves slot i between the lru and the quiet list.
func (t *Tracker) setQuiet(i int32, on bool) {
	c := t.at(i)
	if (c.flags&quiet != 0) == on {
		return
	}
	t.unlink(t.listOf(c), i)
	c.flags ^= quiet
	t.pushFront(t.listOf(c), i)
}

// twPushBack (re)starts slot i's TIME_WAIT timer at now: the TIME_WAIT
// list stays ordered by deadline because every entry lasts 2×MSL.
func (t *Tracker) twPushBack(i int32, now int64) {
	t.twUnlink(i)
	c := t.at(i)
	c.twAt = now
	c.flags |= inTimeWait
	t.pushBack(&t.timeWait, i)
}

// twInsert puts slot i on the TIME_WAIT list with its timer started at
// at, which may lie in the past (an inherited TIME_WAIT): walking from the
// back keeps the list in deadline order.
func (t *Tracker) twInsert(i int32, at int64) {
	t.twPushBack(i, at)
	n := &t.at(i).link[timeWaitLinks]
	for n.prev != none && t.at(n.prev).twAt > at {
		p := n.prev
		pn := &t.at(p).link[timeWaitLinks]
		// swap i and its predecessor p
		if pn.prev != none {
			t.at(pn.prev).link[timeWaitLinks].next = i
		} else {
			t.timeWait.head = i
		}
		if n.next != none {
			t.at(n.next).link[timeWaitLinks].prev = p
		} else {
			t.timeWait.tail = p
		}
		n.prev, pn.next, pn.prev, n.next = pn.prev, n.next, i, p
	}
}

// twUnlink takes slot i off the TIME_WAIT list if it is on it.
func (t *Tracker) twUnlink(i int32) {
	c := t.at(i)
	if c.flags&inTimeWait == 0 {
		return
	}
	t.unlink(&t.timeWait, i)
	c.flags &^= inTimeWait
}
