package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Default returns the configuration used when a key is absent: the
// defaults of nfq.Intercept (forward mode, every port, queue 100, one
// queue), of the tracker, seed 1 and no rules.
func Default() Config {
	return Config{
		Intercept: nfq.DefaultIntercept(),
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

// failed reports whether path has an error already.
func (d *decoder) failed(path string) bool {
	for _, e := range d.errs {
		if e.Path == path {
			return true
		}
	}
	return false
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
	root, _ := d.object("", tree, "intercept", "tracker", "seed", "rules", "expect")
	if v, ok := root.get("intercept"); ok {
		c.Intercept = d.intercept("intercept", v)
	}
	c.Tracker.ServerPorts = c.Intercept.Ports
	if v, ok := root.get("tracker"); ok {
		d.tracker("tracker", v, &c.Tracker)
	}
	// Each queue's tracker is a shard of the run's conn_ids (see
	// statetrack.Config.Shards): the more queues, the fewer slots each.
	if most := statetrack.MaxConnectionsFor(int(c.Intercept.Queues)); c.Tracker.MaxConnections > most && !d.failed("intercept.queues") && !d.failed("tracker.max-connections") {
		d.fail("tracker.max-connections", "%d is above %d, the most connections per queue that conn_ids leave each of %d queues (intercept.queues)",
			c.Tracker.MaxConnections, most, c.Intercept.Queues)
	}
	if v, ok := root.get("seed"); ok {
		c.Seed, _ = d.uint("seed", v, 0, math.MaxUint64)
	}
	if v, ok := root.get("rules"); ok {
		c.Rules = d.rules("rules", v)
		if !d.failed("tracker.idle-timeout") {
			d.idleBelowTimeout("rules", c.Rules, c.Tracker.IdleTimeout)
		}
	}
	if v, ok := root.get("expect"); ok {
		c.Expect = d.expectations("expect", v, c.Rules)
	}
	return c
}

// maxQueueLength bounds intercept.queue-length: a queue of packets
// awaiting a verdict longer than this only adds latency (each packet holds
// an skb in the kernel meanwhile).
const maxQueueLength = 1 << 20

func (d *decoder) intercept(path string, v any) nfq.Intercept {
	in := nfq.DefaultIntercept()
	m, _ := d.object(path, v, "mode", "ports", "hosts", "queue", "queues", "queue-length")
	if v, ok := m.get("mode"); ok {
		modes := []nfq.Mode{nfq.Forward, nfq.Local}
		if i, ok := d.oneOf(join(path, "mode"), v, "mode", modes[0].String(), modes[1].String()); ok {
			in.Mode = modes[i]
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
	if last := in.LastQueue(); queueOK && queuesOK && last > math.MaxUint16 {
		d.fail(join(path, "queues"), "queues %d to %d go past 65535", in.Queue, last)
	}
	if v, ok := m.get("queue-length"); ok {
		n, _ := d.uint(join(path, "queue-length"), v, 1, maxQueueLength)
		in.QueueLength = uint32(n)
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

func (d *decoder) rules(path string, v any) []rules.Rule {
	items, ok := d.list(path, v)
	if !ok {
		return nil
	}
	rs := make([]rules.Rule, 0, len(items))
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

// idleBelowTimeout refuses a match.idle that the tracker cannot see: it
// forgets a connection quiet for its idle timeout, and the packet that
// ends the gap starts a mid-stream pickup, with no gap before it.
func (d *decoder) idleBelowTimeout(path string, rs []rules.Rule, timeout time.Duration) {
	for i, r := range rs {
		if r.Match.Idle >= timeout {
			d.fail(join(index(path, i), "match.idle"), "%s is not below tracker.idle-timeout %s: the tracker forgets a connection quiet that long, so the rule never matches", r.Match.Idle, timeout)
		}
	}
}

func (d *decoder) rule(path string, i int, v any) rules.Rule {
	r := rules.Rule{Name: rules.DefaultName(i), Probability: rules.DefaultProbability}
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
		d.fail(join(path, "action"), "missing (want %s)", rules.BriefSyntax())
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

func (d *decoder) match(path string, v any) rules.Match {
	var mt rules.Match
	m, _ := d.object(path, v, "packet", "closer", "from", "nth", "retransmission", "state", "port", "src", "dst", "idle")
	packetsOK := true
	if v, ok := m.get("packet"); ok {
		mt.Packets, packetsOK = d.kinds(join(path, "packet"), v)
	}
	if v, ok := m.get("closer"); ok {
		p := join(path, "closer")
		if i, ok := d.oneOf(p, v, "closer", "active", "passive"); ok {
			mt.Closer = []statetrack.Closer{statetrack.Active, statetrack.Passive}[i]
		}
		if err := mt.CheckCloser(); err != nil && packetsOK {
			d.fail(p, "%v", err)
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
	if v, ok := m.get("idle"); ok {
		mt.Idle = d.positiveDuration(join(path, "idle"), v, 0)
	}
	return mt
}

// action decodes an action in one of its forms (rules.ParseAction for a
// bare name, rules.MapForms for a map), leaving what each parameter means
// and allows to rules.
func (d *decoder) action(path string, v any) rules.Action {
	if s, ok := v.(string); ok {
		a, err := rules.ParseAction(s)
		if err != nil {
			d.fail(path, "%v", err)
		}
		return a
	}
	if _, ok := asMap(v); !ok {
		d.fail(path, "want %s, got %s", rules.Syntax(), describe(v))
		return rules.Action{}
	}
	forms := rules.MapForms()
	var keys, formKeys []string
	for _, f := range forms {
		formKeys = append(formKeys, f.Key())
		for _, p := range f.Params {
			keys = append(keys, p.Key)
		}
	}
	m, _ := d.object(path, v, keys...)
	var given []rules.Form
	for _, f := range forms {
		if _, ok := m.get(f.Key()); ok {
			given = append(given, f)
		}
	}
	switch len(given) {
	case 0:
		if len(m) > 0 {
			d.fail(path, "want exactly one of %s", orList(formKeys))
		} else {
			d.fail(path, "empty action (want %s)", rules.Syntax())
		}
		return rules.Action{}
	case 1:
	default:
		d.fail(path, "%s and %s exclude each other", given[0].Key(), given[1].Key())
		return rules.Action{}
	}
	form := given[0]
	for _, f := range forms {
		for _, p := range f.Params[1:] {
			if _, ok := m.get(p.Key); ok && f.Key() != form.Key() {
				d.fail(join(path, p.Key), "only with %s", f.Key())
			}
		}
	}
	a := rules.Action{Type: form.Type}
	for _, p := range form.Params {
		v, ok := m.get(p.Key)
		if !ok {
			continue
		}
		pp := join(path, p.Key)
		if val, ok := d.param(pp, p, v); ok {
			if err := p.Set(&a, val); err != nil {
				d.fail(pp, "%v", err)
			}
		}
	}
	return a
}

// param decodes the value of an action parameter by its kind.
func (d *decoder) param(path string, p rules.Param, v any) (val rules.Value, ok bool) {
	switch p.Kind {
	case rules.Duration:
		val.Duration, ok = d.duration(path, v)
	case rules.Count:
		val.Count, ok = d.uint(path, v, p.Min, p.Max)
	case rules.Flag:
		val.Flag, ok = d.bool(path, v)
	case rules.Choice:
		var i int
		i, ok = d.oneOf(path, v, p.Key, p.Choices...)
		val.Count = uint64(i)
	}
	return val, ok
}

func (d *decoder) probability(path string, v any) float64 {
	f, ok := d.float(path, v)
	if !ok {
		return rules.DefaultProbability
	}
	if err := rules.CheckProbability(f); err != nil {
		d.fail(path, "%v", err)
		return rules.DefaultProbability
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
