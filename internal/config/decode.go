package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Defaults applied by Decode and Default.
const (
	DefaultQueue       = 100
	DefaultQueues      = 1
	DefaultSeed        = 1
	DefaultProbability = 1.0
	// MaxCopies bounds a duplicate action's copies: a typo must not turn
	// one packet into a flood.
	MaxCopies = 1000
)

// Default returns the configuration used when a key is absent: forward
// mode, every port, queue 100, one queue, seed 1, the tracker's defaults
// and no rules.
func Default() Config {
	return Config{
		Intercept: Intercept{Mode: Forward, Queue: DefaultQueue, Queues: DefaultQueues},
		Tracker: statetrack.Config{
			MSL:            statetrack.DefaultMSL,
			MaxConnections: statetrack.DefaultMaxConnections,
			IdleTimeout:    statetrack.DefaultIdleTimeout,
			QuietTimeout:   statetrack.DefaultQuietTimeout,
		},
		Seed: DefaultSeed,
	}
}

// Decode turns a configuration tree, as viper.AllSettings returns it, into a
// validated Config with the defaults applied.
//
// The tree holds what YAML, TOML or JSON decoders produce: maps with string
// keys, lists, strings, integers, floats and booleans. Keys are matched
// without regard to case (viper lowercases them). Numbers may also be given
// as strings ("8080", "0.5"), as environment variables and flags give them.
// Durations are strings with a unit ("300ms"); a bare 0 is accepted too.
// Where a list is accepted (intercept.ports, intercept.hosts and the match
// keys packet, state, port, src, dst) a single value is too, and a string
// is split at commas and spaces ("syn,fin").
//
// Decode reports every problem it finds, not only the first: the error is
// an errors.Join of *FieldError values sorted by key path, so that
// errors.As finds the first one. A nil or empty tree gives Default().
func Decode(tree map[string]any) (Config, error) {
	d := &decoder{}
	c := d.config(tree)
	if len(d.errs) > 0 {
		return Config{}, d.err()
	}
	return c, nil
}

// FieldError is one problem with one key of a configuration tree.
type FieldError struct {
	// Path is the key's path, e.g. "rules[2].match.packet" or
	// "intercept.hosts[1]"; empty for the tree itself.
	Path string
	// Reason says what is wrong, e.g. `bad CIDR "10.0.0.300/8"`.
	Reason string
}

// Error returns "path: reason".
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// decoder accumulates the errors of one Decode call.
type decoder struct {
	errs []*FieldError
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

// err joins the errors sorted by path (numbers in paths compare as numbers,
// so rules[10] comes after rules[9]).
func (d *decoder) err() error {
	sortByPath(d.errs)
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (d *decoder) config(tree map[string]any) Config {
	c := Default()
	root, _ := d.object("", tree, "intercept", "tracker", "seed", "rules")
	if v, ok := root.get("intercept"); ok {
		c.Intercept = d.intercept("intercept", v)
	}
	c.Tracker.ServerPorts = c.Intercept.Ports
	if v, ok := root.get("tracker"); ok {
		d.tracker("tracker", v, &c.Tracker)
	}
	if v, ok := root.get("seed"); ok {
		c.Seed, _ = d.uint("seed", v, 0, math.MaxUint64)
	}
	if v, ok := root.get("rules"); ok {
		c.Rules = d.rules("rules", v)
	}
	return c
}

func (d *decoder) intercept(path string, v any) Intercept {
	in := Default().Intercept
	m, _ := d.object(path, v, "mode", "ports", "hosts", "queue", "queues")
	if v, ok := m.get("mode"); ok {
		if i, ok := d.oneOf(join(path, "mode"), v, "mode", "forward", "local"); ok {
			in.Mode = []Mode{Forward, Local}[i]
		}
	}
	if v, ok := m.get("ports"); ok {
		in.Ports = d.ports(join(path, "ports"), v)
	}
	if v, ok := m.get("hosts"); ok {
		in.Hosts = d.prefixes(join(path, "hosts"), v)
	}
	queueOK, queuesOK := true, true
	if v, ok := m.get("queue"); ok {
		var q uint64
		q, queueOK = d.uint(join(path, "queue"), v, 0, math.MaxUint16)
		in.Queue = uint16(q)
	}
	if v, ok := m.get("queues"); ok {
		var n uint64
		n, queuesOK = d.uint(join(path, "queues"), v, 1, math.MaxUint16)
		in.Queues = uint16(n)
	}
	if queueOK && queuesOK && uint32(in.Queue)+uint32(in.Queues)-1 > math.MaxUint16 {
		d.fail(join(path, "queues"), "queues %d to %d go past 65535", in.Queue, uint32(in.Queue)+uint32(in.Queues)-1)
	}
	return in
}

func (d *decoder) tracker(path string, v any, t *statetrack.Config) {
	m, _ := d.object(path, v, "msl", "max-connections", "idle-timeout", "quiet-timeout")
	if v, ok := m.get("msl"); ok {
		t.MSL = d.positiveDuration(join(path, "msl"), v, t.MSL)
	}
	if v, ok := m.get("max-connections"); ok {
		if n, ok := d.uint(join(path, "max-connections"), v, 1, math.MaxInt32); ok {
			t.MaxConnections = int(n)
		}
	}
	if v, ok := m.get("idle-timeout"); ok {
		t.IdleTimeout = d.positiveDuration(join(path, "idle-timeout"), v, t.IdleTimeout)
	}
	if v, ok := m.get("quiet-timeout"); ok {
		t.QuietTimeout = d.positiveDuration(join(path, "quiet-timeout"), v, t.QuietTimeout)
	}
}

// positiveDuration decodes a duration that must be above zero (a zero
// would silently select the tracker's default); it returns def on error.
func (d *decoder) positiveDuration(path string, v any, def time.Duration) time.Duration {
	dur, ok := d.duration(path, v)
	if !ok {
		return def
	}
	if dur == 0 {
		d.fail(path, "must be positive")
		return def
	}
	return dur
}

func (d *decoder) rules(path string, v any) []Rule {
	items, ok := d.list(path, v)
	if !ok {
		return nil
	}
	rs := make([]Rule, 0, len(items))
	firstByName := make(map[string]int, len(items))
	for i, it := range items {
		r := d.rule(it.path, i, it.v)
		if j, dup := firstByName[r.Name]; dup {
			d.fail(join(it.path, "name"), "duplicate rule name %q (also %s)", r.Name, index(path, j))
		} else {
			firstByName[r.Name] = i
		}
		rs = append(rs, r)
	}
	return rs
}

func (d *decoder) rule(path string, i int, v any) Rule {
	r := Rule{Name: fmt.Sprintf("rule-%d", i+1), Probability: DefaultProbability}
	if v == nil {
		d.fail(path, "empty rule")
		return r
	}
	m, ok := d.object(path, v, "name", "match", "action", "probability", "limit")
	if !ok {
		return r
	}
	if v, ok := m.get("name"); ok {
		if s, ok := d.name(join(path, "name"), v); ok && s != "" {
			r.Name = s
		}
	}
	if v, ok := m.get("match"); ok {
		r.Match = d.match(join(path, "match"), v)
	}
	if v, ok := m.get("action"); ok {
		r.Action = d.action(join(path, "action"), v)
	} else {
		d.fail(join(path, "action"), "missing (want drop, accept, {delay: D}, {duplicate: N})")
	}
	if v, ok := m.get("probability"); ok {
		r.Probability = d.probability(join(path, "probability"), v)
	}
	if v, ok := m.get("limit"); ok {
		r.Limit, _ = d.uint(join(path, "limit"), v, 0, math.MaxUint64)
	}
	return r
}

// name decodes a rule name: a string (or a number, which YAML makes of an
// unquoted 42) without control characters.
func (d *decoder) name(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		if _, _, _, problem := integer(v); problem != "" {
			d.fail(path, "want a string, got %s", describe(v))
			return "", false
		}
		s = fmt.Sprint(v)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			d.fail(path, "control character in name %q", s)
			return "", false
		}
	}
	return s, true
}

func (d *decoder) match(path string, v any) Match {
	var mt Match
	m, _ := d.object(path, v, "packet", "closer", "from", "nth", "retransmission", "state", "port", "src", "dst")
	packetsOK := true
	if v, ok := m.get("packet"); ok {
		mt.Packets, packetsOK = d.kinds(join(path, "packet"), v)
	}
	if v, ok := m.get("closer"); ok {
		p := join(path, "closer")
		if i, ok := d.oneOf(p, v, "closer", "active", "passive"); ok {
			mt.Closer = []statetrack.Closer{statetrack.Active, statetrack.Passive}[i]
		}
		if mt.Closer != statetrack.NoCloser && packetsOK && len(mt.Packets) > 0 && !slices.Contains(mt.Packets, statetrack.Fin) {
			d.fail(p, "only fin packets have a closer, and packet does not include fin")
		}
	}
	if v, ok := m.get("from"); ok {
		if i, ok := d.oneOf(join(path, "from"), v, "side", "client", "server"); ok {
			side := []statetrack.Side{statetrack.Client, statetrack.Server}[i]
			mt.From = &side
		}
	}
	if v, ok := m.get("nth"); ok {
		n, _ := d.uint(join(path, "nth"), v, 1, math.MaxUint32)
		mt.Nth = uint32(n)
	}
	if v, ok := m.get("retransmission"); ok {
		if b, ok := d.bool(join(path, "retransmission"), v); ok {
			mt.Retransmission = &b
		}
	}
	if v, ok := m.get("state"); ok {
		mt.States = d.states(join(path, "state"), v)
	}
	if v, ok := m.get("port"); ok {
		mt.Ports = d.ports(join(path, "port"), v)
	}
	if v, ok := m.get("src"); ok {
		mt.Src = d.prefixes(join(path, "src"), v)
	}
	if v, ok := m.get("dst"); ok {
		mt.Dst = d.prefixes(join(path, "dst"), v)
	}
	return mt
}

const actionForms = "drop, accept, {delay: D, jitter: J}, {duplicate: N, after: D} or {drop: true}"

func (d *decoder) action(path string, v any) Action {
	if s, ok := v.(string); ok {
		switch lower(s) {
		case "drop":
			return Action{Type: Drop}
		case "accept":
			return Action{Type: Accept}
		case "delay":
			d.fail(path, "delay needs a duration, e.g. {delay: 300ms}")
		case "duplicate":
			d.fail(path, "duplicate needs a count, e.g. {duplicate: 1, after: 3s}")
		default:
			d.fail(path, "unknown action %q (want %s)", s, actionForms)
		}
		return Action{}
	}
	if _, ok := asMap(v); !ok {
		d.fail(path, "want %s, got %s", actionForms, describe(v))
		return Action{}
	}
	m, _ := d.object(path, v, "delay", "jitter", "duplicate", "after", "drop")
	var primary []string
	for _, k := range []string{"delay", "duplicate", "drop"} {
		if _, ok := m.get(k); ok {
			primary = append(primary, k)
		}
	}
	switch len(primary) {
	case 0:
		if len(m) > 0 {
			d.fail(path, "want exactly one of delay, duplicate or drop")
		} else {
			d.fail(path, "empty action (want %s)", actionForms)
		}
		return Action{}
	case 1:
	default:
		d.fail(path, "%s and %s exclude each other", primary[0], primary[1])
		return Action{}
	}
	for key, needs := range map[string]string{"jitter": "delay", "after": "duplicate"} {
		if _, ok := m.get(key); ok && primary[0] != needs {
			d.fail(join(path, key), "only with %s", needs)
		}
	}
	switch primary[0] {
	case "delay":
		return d.delay(path, m)
	case "duplicate":
		return d.duplicate(path, m)
	}
	p := join(path, "drop")
	if b, ok := d.bool(p, m["drop"]); ok && !b {
		d.fail(p, "drop: false means nothing; use accept")
	}
	return Action{Type: Drop}
}

func (d *decoder) delay(path string, m object) Action {
	a := Action{Type: Delay}
	p := join(path, "delay")
	delay, delayOK := d.duration(p, m["delay"])
	if delayOK && delay == 0 {
		d.fail(p, "must be positive")
		delayOK = false
	}
	a.Delay = delay
	if v, ok := m.get("jitter"); ok {
		jp := join(path, "jitter")
		jitter, ok := d.duration(jp, v)
		if ok && delayOK && jitter > delay {
			d.fail(jp, "%v is more than the delay %v", jitter, delay)
		}
		a.Jitter = jitter
	}
	return a
}

func (d *decoder) duplicate(path string, m object) Action {
	a := Action{Type: Duplicate}
	n, _ := d.uint(join(path, "duplicate"), m["duplicate"], 1, MaxCopies)
	a.Copies = uint32(n)
	if v, ok := m.get("after"); ok {
		a.After, _ = d.duration(join(path, "after"), v)
	}
	return a
}

func (d *decoder) probability(path string, v any) float64 {
	f, ok := d.float(path, v)
	if !ok {
		return DefaultProbability
	}
	if f < 0 || f > 1 {
		d.fail(path, "%v is outside [0,1]", f)
		return DefaultProbability
	}
	return f
}

// elems decodes a list (or a single value) with parse, refusing repeated
// elements, which are harmless to matching but almost always a typo for
// another value. ok is false when any element was refused.
func elems[T comparable](d *decoder, path string, v any, parse func(path string, v any) (T, bool)) (es []T, ok bool) {
	items, ok := d.list(path, v)
	if !ok {
		return nil, false
	}
	first := make(map[T]string, len(items))
	for _, it := range items {
		e, ok := parse(it.path, it.v)
		if !ok {
			continue
		}
		if p, dup := first[e]; dup {
			d.fail(it.path, "%v repeats %s", e, p)
			continue
		}
		first[e] = it.path
		es = append(es, e)
	}
	return es, len(es) == len(items)
}

// named returns a parser of strings by parse, such as statetrack.ParseKind.
func named[T any](d *decoder, parse func(string) (T, error)) func(path string, v any) (T, bool) {
	return func(path string, v any) (T, bool) {
		var zero T
		s, ok := d.str(path, v)
		if !ok {
			return zero, false
		}
		t, err := parse(s)
		if err != nil {
			d.fail(path, "%v", err)
			return zero, false
		}
		return t, true
	}
}

func (d *decoder) kinds(path string, v any) ([]statetrack.Kind, bool) {
	return elems(d, path, v, named(d, statetrack.ParseKind))
}

func (d *decoder) states(path string, v any) []statetrack.State {
	ss, _ := elems(d, path, v, named(d, statetrack.ParseState))
	return ss
}

func (d *decoder) ports(path string, v any) []uint16 {
	ps, _ := elems(d, path, v, func(path string, v any) (uint16, bool) {
		n, ok := d.uint(path, v, 1, math.MaxUint16)
		return uint16(n), ok
	})
	return ps
}

func (d *decoder) prefixes(path string, v any) []netip.Prefix {
	ps, _ := elems(d, path, v, d.prefix)
	return ps
}

// prefix decodes a CIDR prefix; a bare address is a prefix of one host.
// Host bits are cleared ("10.1.2.3/8" is 10.0.0.0/8).
func (d *decoder) prefix(path string, v any) (netip.Prefix, bool) {
	s, ok := d.str(path, v)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			d.fail(path, "bad CIDR %q", s)
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		d.fail(path, "IPv4-mapped prefix %q: write it as IPv4", s)
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}
