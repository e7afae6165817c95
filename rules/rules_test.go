package rules

import (
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

var (
	client4 = netip.MustParseAddrPort("198.18.0.1:40000")
	server4 = netip.MustParseAddrPort("198.18.1.1:8080")
	client6 = netip.MustParseAddrPort("[fd00:1::2]:40312")
	server6 = netip.MustParseAddrPort("[fd00:2::1]:5432")
)

// obs returns an observation of a packet of kind k from the client of an
// established IPv4 connection to port 8080, as modified by mods.
func obs(k statetrack.Kind, mods ...func(*statetrack.Observation)) *statetrack.Observation {
	o := &statetrack.Observation{
		Seg:    statetrack.Segment{Src: client4, Dst: server4},
		Client: client4, Server: server4,
		From: statetrack.Client, Kind: k, Nth: 1,
		Before: [2]statetrack.State{statetrack.Established, statetrack.Established},
	}
	for _, m := range mods {
		m(o)
	}
	return o
}

func fromServer(o *statetrack.Observation) {
	o.From = statetrack.Server
	o.Seg.Src, o.Seg.Dst = o.Server, o.Client
}

func nth(n uint32) func(*statetrack.Observation) {
	return func(o *statetrack.Observation) { o.Nth = n }
}

func rexmit(o *statetrack.Observation) { o.Retransmission = true }

func idle(d time.Duration) func(*statetrack.Observation) {
	return func(o *statetrack.Observation) { o.Idle = d }
}

func closer(c statetrack.Closer) func(*statetrack.Observation) {
	return func(o *statetrack.Observation) { o.Closer = c }
}

// before sets the client's and the server's states before the packet.
func before(c, s statetrack.State) func(*statetrack.Observation) {
	return func(o *statetrack.Observation) { o.Before = [2]statetrack.State{c, s} }
}

// conn moves the observation to another connection, sent by the client.
func conn(client, server netip.AddrPort) func(*statetrack.Observation) {
	return func(o *statetrack.Observation) {
		o.Client, o.Server = client, server
		o.Seg.Src, o.Seg.Dst = client, server
	}
}

func side(s statetrack.Side) *statetrack.Side { return &s }
func boolp(b bool) *bool                      { return &b }

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

func drop(m Match) Rule {
	return Rule{Name: "r", Match: m, Action: Action{Type: Drop}, Probability: 1}
}

func TestMatch(t *testing.T) {
	type pkt struct {
		o    *statetrack.Observation
		want bool
	}
	S := statetrack.Syn
	for _, tc := range []struct {
		name  string
		match Match
		pkts  []pkt
	}{
		{"empty matches all", Match{}, []pkt{
			{obs(S), true}, {obs(statetrack.Data, fromServer), true}, {obs(statetrack.Rst, rexmit, nth(9)), true},
		}},
		{"one kind", Match{Packets: []statetrack.Kind{statetrack.SynAck}}, []pkt{
			{obs(statetrack.SynAck, fromServer), true}, {obs(S), false}, {obs(statetrack.HandshakeAck), false},
		}},
		{"kinds", Match{Packets: []statetrack.Kind{statetrack.FinAck, statetrack.FinalAck}}, []pkt{
			{obs(statetrack.FinAck), true}, {obs(statetrack.FinalAck), true}, {obs(statetrack.Ack), false}, {obs(statetrack.Fin), false},
		}},
		{"closer", Match{Packets: []statetrack.Kind{statetrack.Fin}, Closer: statetrack.Passive}, []pkt{
			{obs(statetrack.Fin, closer(statetrack.Passive)), true}, {obs(statetrack.Fin, closer(statetrack.Active)), false},
		}},
		{"closer alone selects fin", Match{Closer: statetrack.Active}, []pkt{
			{obs(statetrack.Fin, closer(statetrack.Active)), true}, {obs(statetrack.Fin, closer(statetrack.Passive)), false},
			{obs(statetrack.Ack), false},
		}},
		{"from server", Match{From: side(statetrack.Server)}, []pkt{
			{obs(statetrack.SynAck, fromServer), true}, {obs(S), false},
		}},
		{"from client", Match{From: side(statetrack.Client)}, []pkt{
			{obs(statetrack.SynAck, fromServer), false}, {obs(S), true},
		}},
		{"nth", Match{Packets: []statetrack.Kind{S}, Nth: 2}, []pkt{
			{obs(S, nth(2), rexmit), true}, {obs(S), false}, {obs(S, nth(3), rexmit), false},
		}},
		{"idle at least", Match{Idle: 350 * time.Second}, []pkt{
			{obs(statetrack.Data, idle(350*time.Second)), true}, {obs(statetrack.Data, idle(time.Hour)), true},
			{obs(statetrack.Data, idle(349*time.Second)), false}, {obs(S), false},
		}},
		{"keepalive nth", Match{Packets: []statetrack.Kind{statetrack.KeepaliveAck}, Nth: 2}, []pkt{
			{obs(statetrack.KeepaliveAck, nth(2)), true}, {obs(statetrack.Keepalive, nth(2)), false}, {obs(statetrack.Ack, nth(2)), false},
		}},
		{"retransmissions", Match{Retransmission: boolp(true)}, []pkt{
			{obs(statetrack.Data, rexmit, nth(5)), true}, {obs(statetrack.Data, nth(5)), false},
		}},
		{"originals", Match{Retransmission: boolp(false)}, []pkt{
			{obs(statetrack.Data, rexmit, nth(5)), false}, {obs(statetrack.Data, nth(5)), true},
		}},
		{"state is the sender's before", Match{States: []statetrack.State{statetrack.TimeWait, statetrack.LastAck}}, []pkt{
			{obs(statetrack.FinalAck, nth(2), before(statetrack.TimeWait, statetrack.LastAck)), true},
			{obs(statetrack.Fin, fromServer, nth(2), before(statetrack.TimeWait, statetrack.LastAck)), true},
			{obs(statetrack.Fin, fromServer, before(statetrack.FinWait2, statetrack.CloseWait)), false},
			{obs(statetrack.Ack, before(statetrack.Established, statetrack.LastAck)), false},
		}},
		{"server port either direction", Match{Ports: []uint16{443, 8080}}, []pkt{
			{obs(S), true}, {obs(statetrack.SynAck, fromServer), true}, {obs(S, conn(client6, server6)), false},
		}},
		{"src v4", Match{Src: prefixes("198.18.0.0/24")}, []pkt{
			{obs(S), true}, {obs(statetrack.SynAck, fromServer), false}, {obs(S, conn(client6, server6)), false},
		}},
		{"dst v4", Match{Dst: prefixes("10.0.0.0/8", "198.18.1.1/32")}, []pkt{
			{obs(S), true}, {obs(statetrack.SynAck, fromServer), false},
		}},
		{"src v6", Match{Src: prefixes("fd00:1::/64")}, []pkt{
			{obs(S, conn(client6, server6)), true}, {obs(S), false},
			{obs(statetrack.SynAck, conn(client6, server6), fromServer), false},
		}},
		{"dst v6 and v4", Match{Dst: prefixes("fd00:2::/32", "198.18.0.0/15")}, []pkt{
			{obs(S, conn(client6, server6)), true}, {obs(S), true},
		}},
		{"mapped address matches v4 prefix", Match{Src: prefixes("198.18.0.0/15")}, []pkt{
			{obs(S, conn(netip.MustParseAddrPort("[::ffff:198.18.0.1]:40000"), server4)), true},
		}},
		{"every selector", Match{
			Packets: []statetrack.Kind{statetrack.FinalAck}, From: side(statetrack.Client), Nth: 1,
			Retransmission: boolp(false), States: []statetrack.State{statetrack.FinWait2}, Ports: []uint16{8080},
			Src: prefixes("198.18.0.1/32"), Dst: prefixes("198.18.1.0/24"),
		}, []pkt{
			{obs(statetrack.FinalAck, before(statetrack.FinWait2, statetrack.LastAck)), true},
			{obs(statetrack.FinalAck, before(statetrack.FinWait2, statetrack.LastAck), nth(2)), false},
			{obs(statetrack.FinalAck, before(statetrack.FinWait2, statetrack.LastAck), rexmit), false},
			{obs(statetrack.FinalAck, before(statetrack.TimeWait, statetrack.LastAck)), false},
			{obs(statetrack.FinalAck, before(statetrack.FinWait2, statetrack.LastAck), fromServer), false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(Compile([]Rule{drop(tc.match)}), 1)
			for i, p := range tc.pkts {
				d := e.Decide(p.o)
				if got := d.Rule == 0; got != p.want || (got && d.Action != Drop) {
					t.Errorf("packet %d (%v from %v): decision %+v, want match %v", i, p.o.Kind, p.o.From, d, p.want)
				}
			}
		})
	}
}

func TestActions(t *testing.T) {
	for _, tc := range []struct {
		action Action
		want   Decision
	}{
		{Action{Type: Drop}, Decision{Action: Drop}},
		{Action{Type: Accept}, Decision{Action: Accept}},
		{Action{Type: Delay, Delay: 300 * time.Millisecond}, Decision{Action: Delay, Hold: 300 * time.Millisecond}},
		{Action{Type: Duplicate, Copies: 2, After: 3 * time.Second}, Decision{Action: Duplicate, Copies: 2, After: 3 * time.Second}},
	} {
		s := Compile([]Rule{
			{Name: "other", Match: Match{Packets: []statetrack.Kind{statetrack.Rst}}, Action: Action{Type: Drop}, Probability: 1},
			{Name: "this", Action: tc.action, Probability: 1},
		})
		tc.want.Rule, tc.want.RuleName = 1, "this"
		if got := NewEngine(s, 1).Decide(obs(statetrack.Syn)); got != tc.want {
			t.Errorf("%v: got %+v, want %+v", tc.action.Type, got, tc.want)
		}
	}
}

func TestNoRuleAccepts(t *testing.T) {
	for _, s := range []*Set{Compile(nil), Compile([]Rule{drop(Match{Packets: []statetrack.Kind{statetrack.Rst}})})} {
		if got, want := NewEngine(s, 1).Decide(obs(statetrack.Syn)), (Decision{Action: Accept, Rule: -1}); got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
}

func TestJitter(t *testing.T) {
	const delay, jitter = 100 * time.Millisecond, 20 * time.Millisecond
	e := NewEngine(Compile([]Rule{{Action: Action{Type: Delay, Delay: delay, Jitter: jitter}, Probability: 1}}), 7)
	lo, hi, sum := time.Duration(1<<62), time.Duration(0), time.Duration(0)
	const n = 10000
	for range n {
		h := e.Decide(obs(statetrack.Data)).Hold
		lo, hi, sum = min(lo, h), max(hi, h), sum+h
	}
	if lo < delay-jitter || hi > delay+jitter {
		t.Errorf("holds in [%v, %v], want within [%v, %v]", lo, hi, delay-jitter, delay+jitter)
	}
	if lo > delay-jitter+jitter/50 || hi < delay+jitter-jitter/50 {
		t.Errorf("holds in [%v, %v] do not reach near both ends of [%v, %v]", lo, hi, delay-jitter, delay+jitter)
	}
	if mean := sum / n; mean < delay-time.Millisecond || mean > delay+time.Millisecond {
		t.Errorf("mean hold %v, want about %v", mean, delay)
	}
}

// Decode refuses a jitter above the delay, but a Config built in code may
// hold one: the hold is clamped at zero.
func TestJitterClampedAtZero(t *testing.T) {
	e := NewEngine(Compile([]Rule{{Action: Action{Type: Delay, Delay: time.Millisecond, Jitter: 10 * time.Millisecond}, Probability: 1}}), 1)
	zeros := 0
	for range 1000 {
		h := e.Decide(obs(statetrack.Data)).Hold
		if h < 0 || h > 11*time.Millisecond {
			t.Fatalf("hold %v outside [0, 11ms]", h)
		}
		if h == 0 {
			zeros++
		}
	}
	if zeros < 300 {
		t.Errorf("%d zero holds of 1000, want about 450", zeros)
	}
}

func TestProbability(t *testing.T) {
	for _, tc := range []struct {
		p      float64
		lo, hi int
	}{{0, 0, 0}, {0.3, 2800, 3200}, {0.5, 4800, 5200}, {1, 10000, 10000}} {
		e := NewEngine(Compile([]Rule{{Action: Action{Type: Drop}, Probability: tc.p}}), 42)
		n := 0
		for range 10000 {
			switch d := e.Decide(obs(statetrack.Data)); {
			case d.Rule == 0 && d.Action == Drop:
				n++
			case d != Decision{Rule: -1}:
				t.Fatalf("p=%v: decision %+v", tc.p, d)
			}
		}
		if n < tc.lo || n > tc.hi {
			t.Errorf("p=%v: %d of 10000 dropped, want in [%d, %d]", tc.p, n, tc.lo, tc.hi)
		}
		if got := e.Hits()[0]; got != uint64(n) {
			t.Errorf("p=%v: Hits %d, want %d", tc.p, got, n)
		}
	}
}

// Rules with probability 0 or 1 draw nothing: the draws of a rule with
// probability 0.5 are the same whether or not such packets come between.
func TestCertainRulesDrawNothing(t *testing.T) {
	s := Compile([]Rule{
		{Name: "always", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}}, Action: Action{Type: Drop}, Probability: 1},
		{Name: "never", Match: Match{Packets: []statetrack.Kind{statetrack.Rst}}, Action: Action{Type: Drop}, Probability: 0},
		{Name: "half", Action: Action{Type: Drop}, Probability: 0.5},
	})
	quiet, busy := NewEngine(s, 3), NewEngine(s, 3)
	for i := range 1000 {
		busy.Decide(obs(statetrack.Syn))
		busy.Decide(obs(statetrack.Rst))
		if q, b := quiet.Decide(obs(statetrack.Data)), busy.Decide(obs(statetrack.Data)); q != b {
			t.Fatalf("packet %d: %+v without certain rules in between, %+v with", i, q, b)
		}
	}
}

func TestDeterminism(t *testing.T) {
	s := Compile([]Rule{
		{Name: "lossy", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}}, Action: Action{Type: Drop}, Probability: 0.3},
		{Name: "jittery", Action: Action{Type: Delay, Delay: 50 * time.Millisecond, Jitter: 50 * time.Millisecond}, Probability: 0.7},
	})
	run := func(seed uint64) []Decision {
		e := NewEngine(s, seed)
		ds := make([]Decision, 0, 2000)
		for i := range 1000 {
			ds = append(ds, e.Decide(obs(statetrack.Syn, nth(uint32(i%3+1)))), e.Decide(obs(statetrack.Data)))
		}
		return ds
	}
	a, b, c := run(9), run(9), run(10)
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed, same packets, different decisions")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("seeds 9 and 10 gave the same 2000 decisions")
	}
}

func TestFirstMatchDecides(t *testing.T) {
	s := Compile([]Rule{
		{Name: "exempt-8443", Match: Match{Ports: []uint16{8443}}, Action: Action{Type: Accept}, Probability: 1},
		{Name: "first-syn-never", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1}, Action: Action{Type: Drop}, Probability: 0},
		{Name: "one-syn-ack", Match: Match{Packets: []statetrack.Kind{statetrack.SynAck}}, Action: Action{Type: Drop}, Probability: 1, Limit: 1},
		{Name: "delay-handshake", Match: Match{Packets: []statetrack.Kind{statetrack.Syn, statetrack.SynAck}}, Action: Action{Type: Delay, Delay: time.Second}, Probability: 1},
	})
	e := NewEngine(s, 1)
	on8443 := conn(client4, netip.MustParseAddrPort("198.18.1.1:8443"))
	for i, tc := range []struct {
		o    *statetrack.Observation
		want Decision
	}{
		{obs(statetrack.Syn, on8443), Decision{Action: Accept, Rule: 0, RuleName: "exempt-8443"}},
		// The second rule matches and does not act: no fall through.
		{obs(statetrack.Syn), Decision{Rule: -1}},
		{obs(statetrack.Syn, nth(2), rexmit), Decision{Action: Delay, Hold: time.Second, Rule: 3, RuleName: "delay-handshake"}},
		{obs(statetrack.SynAck, fromServer), Decision{Action: Drop, Rule: 2, RuleName: "one-syn-ack"}},
		// Its limit used up, the third rule still decides: accept.
		{obs(statetrack.SynAck, fromServer, nth(2), rexmit), Decision{Rule: -1}},
	} {
		if got := e.Decide(tc.o); got != tc.want {
			t.Errorf("packet %d: got %+v, want %+v", i, got, tc.want)
		}
	}
	if got, want := e.Hits(), []uint64{1, 0, 1, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("Hits = %v, want %v", got, want)
	}
}

func TestLimitSharedByEngines(t *testing.T) {
	s := Compile([]Rule{{Name: "five", Action: Action{Type: Drop}, Probability: 1, Limit: 5}})
	a, b := NewEngine(s, 1), NewEngine(s, 2)
	var got []int
	for range 6 {
		got = append(got, a.Decide(obs(statetrack.Data)).Rule, b.Decide(obs(statetrack.Data)).Rule)
	}
	if want := []int{0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules %v, want %v", got, want)
	}
	if a.Hits()[0] != 3 || b.Hits()[0] != 2 || s.Hits()[0] != 5 {
		t.Errorf("hits a %v b %v set %v, want 3, 2, 5", a.Hits(), b.Hits(), s.Hits())
	}
}

func TestLimitConcurrent(t *testing.T) {
	const limit, workers, packets = 100, 4, 1000
	s := Compile([]Rule{{Name: "r", Action: Action{Type: Drop}, Probability: 0.5, Limit: limit}})
	engines := make([]*Engine, workers)
	var wg sync.WaitGroup
	for w := range engines {
		e := NewEngine(s, uint64(w))
		engines[w] = e
		wg.Go(func() {
			for range packets {
				e.Decide(obs(statetrack.Data))
			}
		})
	}
	wg.Wait()
	var sum uint64
	for _, e := range engines {
		sum += e.Hits()[0]
	}
	if sum != limit || s.Hits()[0] != limit {
		t.Errorf("engines acted %d times, set counted %d, want %d", sum, s.Hits()[0], limit)
	}
}

func TestSetAccessors(t *testing.T) {
	rs := []Rule{
		{Name: "syn", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}}, Action: Action{Type: Drop}, Probability: 1},
		{Name: "data-exempt", Match: Match{Packets: []statetrack.Kind{statetrack.Data}}, Action: Action{Type: Accept}, Probability: 1},
		{Name: "active-fin", Match: Match{Closer: statetrack.Active}, Action: Action{Type: Delay, Delay: time.Second}, Probability: 0.1},
		{Name: "rst-off", Match: Match{Packets: []statetrack.Kind{statetrack.Rst}}, Action: Action{Type: Drop}, Probability: 0},
	}
	s := Compile(rs)
	rs[0].Name = "changed"
	if s.Len() != 4 || !reflect.DeepEqual(s.Names(), []string{"syn", "data-exempt", "active-fin", "rst-off"}) {
		t.Errorf("Len %d, Names %q", s.Len(), s.Names())
	}
	s.Names()[0] = "mutated"
	if s.Names()[0] != "syn" {
		t.Error("Names exposes the Set's slice")
	}
	for _, k := range statetrack.Kinds() {
		want := k == statetrack.Syn || k == statetrack.Fin
		if got := s.MayMatch(k); got != want {
			t.Errorf("MayMatch(%v) = %v, want %v", k, got, want)
		}
	}
	if all := Compile([]Rule{{Action: Action{Type: Drop}, Probability: 1}}); !all.MayMatch(statetrack.Data) || !all.MayMatch(statetrack.Ack) {
		t.Error("a rule without match must be able to act on every kind")
	}
}

func TestQuietableAndNeedsPayload(t *testing.T) {
	rule := func(a ActionType, p float64, kinds ...statetrack.Kind) Rule {
		return Rule{Match: Match{Packets: kinds}, Action: Action{Type: a, Copies: 1}, Probability: p}
	}
	idleRule := func(a ActionType, p float64) Rule {
		r := rule(a, p, statetrack.Fin)
		r.Match.Idle = time.Minute
		return r
	}
	for _, c := range []struct {
		name                 string
		rules                []Rule
		quietable, needsData bool
	}{
		{"none", nil, true, false},
		{"control", []Rule{rule(Drop, 1, statetrack.Syn), rule(Drop, 1, statetrack.FinalAck)}, true, false},
		{"data drop", []Rule{rule(Drop, 0.5, statetrack.Data)}, false, false},
		{"ack delay", []Rule{rule(Delay, 1, statetrack.Ack)}, false, false},
		{"data accept", []Rule{rule(Accept, 1, statetrack.Data)}, true, false},
		{"data off", []Rule{rule(Drop, 0, statetrack.Data)}, true, false},
		{"any kind", []Rule{rule(Drop, 1)}, false, false},
		{"dup pure acks", []Rule{rule(Duplicate, 1, statetrack.FinalAck, statetrack.HandshakeAck)}, true, false},
		{"dup syn", []Rule{rule(Duplicate, 1, statetrack.Syn)}, true, true},
		{"dup fin", []Rule{rule(Duplicate, 1, statetrack.Fin)}, true, true},
		{"dup data", []Rule{rule(Duplicate, 1, statetrack.Data)}, false, true},
		{"dup any", []Rule{rule(Duplicate, 1)}, false, true},
		{"dup off", []Rule{rule(Duplicate, 0, statetrack.Data)}, true, false},
		{"keepalive drop", []Rule{rule(Drop, 1, statetrack.Keepalive)}, false, false},
		{"keepalive-ack delay", []Rule{rule(Delay, 1, statetrack.KeepaliveAck)}, false, false},
		{"idle on fin", []Rule{idleRule(Drop, 1)}, false, false},
		{"idle accept", []Rule{idleRule(Accept, 1)}, true, false},
		{"idle off", []Rule{idleRule(Drop, 0)}, true, false},
	} {
		s := Compile(c.rules)
		if got := s.Quietable(); got != c.quietable {
			t.Errorf("%s: Quietable() = %v, want %v", c.name, got, c.quietable)
		}
		if got := s.NeedsPayload(); got != c.needsData {
			t.Errorf("%s: NeedsPayload() = %v, want %v", c.name, got, c.needsData)
		}
	}
}

func TestQuietPhases(t *testing.T) {
	rule := func(a ActionType, p float64, kinds ...statetrack.Kind) Rule {
		return Rule{Match: Match{Packets: kinds}, Action: Action{Type: a}, Probability: p}
	}
	inState := func(r Rule, states ...statetrack.State) Rule {
		r.Match.States = states
		return r
	}
	for _, c := range []struct {
		name             string
		rules            []Rule
		handshake, close bool
	}{
		{"none", nil, true, true},
		{"control", []Rule{rule(Drop, 1, statetrack.Syn), rule(Drop, 1, statetrack.FinalAck), rule(Delay, 1, statetrack.Fin)}, true, true},
		{"data drop", []Rule{rule(Drop, 1, statetrack.Data)}, false, false},
		{"handshake-ack drop", []Rule{rule(Drop, 1, statetrack.HandshakeAck)}, false, true},
		{"handshake-ack accept", []Rule{rule(Accept, 1, statetrack.HandshakeAck)}, true, true},
		{"handshake-ack off", []Rule{rule(Drop, 0, statetrack.HandshakeAck)}, true, true},
		{"fin-ack delay", []Rule{rule(Delay, 1, statetrack.FinAck)}, true, false},
		{"fin-ack dup", []Rule{rule(Duplicate, 1, statetrack.FinAck)}, true, false},
		{"syn-ack from SYN_RCVD", []Rule{inState(rule(Drop, 1, statetrack.SynAck), statetrack.SynRcvd)}, false, true},
		{"rst in FIN_WAIT_2", []Rule{inState(rule(Drop, 1, statetrack.Rst), statetrack.FinWait2)}, true, false},
		{"fin in FIN_WAIT_1", []Rule{inState(rule(Drop, 1, statetrack.Fin), statetrack.FinWait1)}, true, false},
		{"fin in CLOSE_WAIT", []Rule{inState(rule(Drop, 1, statetrack.Fin), statetrack.CloseWait)}, true, true},
		{"rst in FIN_WAIT_2 accept", []Rule{inState(rule(Accept, 1, statetrack.Rst), statetrack.FinWait2)}, true, true},
		{"any kind", []Rule{rule(Drop, 1)}, false, false},
	} {
		s := Compile(c.rules)
		if got := s.QuietHandshake(); got != c.handshake {
			t.Errorf("%s: QuietHandshake() = %v, want %v", c.name, got, c.handshake)
		}
		if got := s.QuietClose(); got != c.close {
			t.Errorf("%s: QuietClose() = %v, want %v", c.name, got, c.close)
		}
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	s := Compile(benchRules())
	e := NewEngine(s, 1)
	pkts := benchPackets()
	for _, o := range pkts {
		if n := testing.AllocsPerRun(1000, func() { e.Decide(o) }); n != 0 {
			t.Errorf("Decide(%v) allocates %v times", o.Kind, n)
		}
	}
}

// benchRules are the rules of the example config (config's
// testdata/design.yaml) with an address-selecting rule in front of them
// and a jittered catch-all behind.
func benchRules() []Rule {
	return []Rule{
		{Name: "lab-only", Match: Match{Src: prefixes("fd00:9::/32"), Dst: prefixes("198.18.9.0/24")}, Action: Action{Type: Accept}, Probability: 1},
		{Name: "lose-first-syn", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1}, Action: Action{Type: Drop}, Probability: 0.5},
		{Name: "lose-final-ack-once", Match: Match{Packets: []statetrack.Kind{statetrack.FinalAck}, Nth: 1, Ports: []uint16{8080}}, Action: Action{Type: Drop}, Probability: 1, Limit: 1},
		{Name: "slow-syn-ack", Match: Match{Packets: []statetrack.Kind{statetrack.SynAck}}, Action: Action{Type: Delay, Delay: 300 * time.Millisecond, Jitter: 20 * time.Millisecond}, Probability: 1},
		{Name: "stale-syn", Match: Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 2}, Action: Action{Type: Duplicate, Copies: 1, After: 3 * time.Second}, Probability: 1, Limit: 10},
		{Name: "close-wait", Match: Match{States: []statetrack.State{statetrack.CloseWait}, From: side(statetrack.Server), Retransmission: boolp(false)}, Action: Action{Type: Delay, Delay: time.Millisecond, Jitter: time.Millisecond}, Probability: 0.01},
	}
}

// benchPackets: a data packet that no rule takes (every rule is tried), a
// SYN (decided by a draw), a SYN-ACK (delayed with jitter) and a final ACK
// (decided by a limit).
func benchPackets() []*statetrack.Observation {
	return []*statetrack.Observation{
		obs(statetrack.Data, conn(client6, server6)),
		obs(statetrack.Syn, before(statetrack.Closed, statetrack.Listen)),
		obs(statetrack.SynAck, fromServer, before(statetrack.SynSent, statetrack.Listen)),
		obs(statetrack.FinalAck, before(statetrack.FinWait2, statetrack.LastAck)),
	}
}

func BenchmarkDecide(b *testing.B) {
	s := Compile(benchRules())
	for _, o := range benchPackets() {
		b.Run(o.Kind.String(), func(b *testing.B) {
			e := NewEngine(s, 1)
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(o)
			}
		})
	}
}

// TestQuietAfter: the data phase may go quiet past the highest nth, per
// sender and kind, of the rules that may act on it; a rule on it without
// nth, or one with Match.Idle, keeps it queued.
func TestQuietAfter(t *testing.T) {
	client := statetrack.Client
	rule := func(nth uint32, from *statetrack.Side, kinds ...statetrack.Kind) Rule {
		return Rule{Match: Match{Packets: kinds, Nth: nth, From: from}, Action: Action{Type: Delay, Delay: time.Millisecond}, Probability: 1}
	}
	var clientData9, both3 statetrack.DataBounds
	clientData9[client][0] = 9
	for side := range both3 {
		for j := range both3[side] {
			both3[side][j] = 3
		}
	}
	both3[client][0] = 9
	idle := rule(0, nil, statetrack.Fin)
	idle.Match.Idle = time.Minute
	off := rule(0, nil, statetrack.Data)
	off.Probability = 0
	for _, c := range []struct {
		name  string
		rules []Rule
		after statetrack.DataBounds
		ok    bool
	}{
		{"none", nil, statetrack.DataBounds{}, true},
		{"control", []Rule{rule(0, nil, statetrack.Syn)}, statetrack.DataBounds{}, true},
		{"client data nth 9", []Rule{rule(9, &client, statetrack.Data), rule(2, &client, statetrack.Data)}, clientData9, true},
		{"any kind nth 3 and client data nth 9", []Rule{rule(3, nil), rule(9, &client, statetrack.Data)}, both3, true},
		{"data without nth", []Rule{rule(9, &client, statetrack.Data), rule(0, nil, statetrack.Ack)}, statetrack.DataBounds{}, false},
		{"idle", []Rule{rule(9, &client, statetrack.Data), idle}, statetrack.DataBounds{}, false},
		{"data rule off", []Rule{off}, statetrack.DataBounds{}, true},
	} {
		s := Compile(c.rules)
		after, ok := s.QuietAfter()
		if after != c.after || ok != c.ok {
			t.Errorf("%s: QuietAfter() = %v, %v; want %v, %v", c.name, after, ok, c.after, c.ok)
		}
		if got, want := s.Quietable(), c.ok && c.after == (statetrack.DataBounds{}); got != want {
			t.Errorf("%s: Quietable() = %v, want %v", c.name, got, want)
		}
	}
}
