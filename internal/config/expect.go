package config

import (
	"math"
	"slices"
	"strings"

	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// This file decodes the `expect:` section into expect.Expectation values;
// rule names are checked against the decoded rules.

// checkKeys are the keys of an expectation that name its check.
var checkKeys = []string{"follows", "never", "reaches", "hits", "exit"}

// packetState is the `packet` of a follows that waits for a state.
const packetState = "state"

func (d *decoder) expectations(path string, v any, rs []rules.Rule) []expect.Expectation {
	items, ok := d.list(path, v)
	if !ok {
		return nil
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	xs := make([]expect.Expectation, 0, len(items))
	firstByName := make(map[string]int, len(items))
	firstExit := -1
	for i, it := range items {
		x, ok := d.expectation(it.path, it.v, names)
		if !ok {
			continue
		}
		if j, dup := firstByName[x.Name]; dup {
			d.fail(join(it.path, "name"), "duplicate expectation name %q (also %s)", x.Name, index(path, j))
			continue
		}
		firstByName[x.Name] = i
		if _, isExit := x.Check.(*expect.Exit); isExit {
			if firstExit >= 0 {
				d.fail(join(it.path, "exit"), "only one exit expectation (also %s)", index(path, firstExit))
				continue
			}
			firstExit = i
		}
		xs = append(xs, x)
	}
	return xs
}

// expectation decodes one item; ok is false when it was refused.
func (d *decoder) expectation(path string, v any, ruleNames []string) (x expect.Expectation, ok bool) {
	if v == nil {
		d.fail(path, "empty expectation")
		return x, false
	}
	m, ok := d.object(path, v, append([]string{"name"}, checkKeys...)...)
	if !ok {
		return x, false
	}
	nameOK := false
	if v, ok := m.get("name"); ok {
		x.Name, nameOK = d.name(join(path, "name"), v)
		if nameOK && x.Name == "" {
			d.fail(join(path, "name"), "empty name")
			nameOK = false
		}
	} else {
		d.fail(join(path, "name"), "missing")
	}
	var given []string
	for _, k := range checkKeys {
		if _, ok := m.get(k); ok {
			given = append(given, k)
		}
	}
	switch len(given) {
	case 0:
		d.fail(path, "want exactly one of %s", orList(checkKeys))
		return x, false
	case 1:
	default:
		d.fail(path, "%s and %s exclude each other", given[0], given[1])
		return x, false
	}
	key := given[0]
	p, cv := join(path, key), m[key]
	n := len(d.errs)
	switch key {
	case "follows":
		x.Check = d.follows(p, cv, ruleNames)
	case "never":
		x.Check = d.never(p, cv)
	case "reaches":
		x.Check = d.reaches(p, cv)
	case "hits":
		x.Check = d.hits(p, cv, ruleNames)
	case "exit":
		x.Check = d.exit(p, cv)
	}
	return x, nameOK && len(d.errs) == n
}

// ruleName decodes a reference to a rule by name.
func (d *decoder) ruleName(path string, v any, ruleNames []string) string {
	s, ok := d.name(path, v)
	if !ok {
		return ""
	}
	if !slices.Contains(ruleNames, s) {
		if len(ruleNames) == 0 {
			d.fail(path, "unknown rule %q (the config has no rules)", s)
		} else {
			d.fail(path, "unknown rule %q (want one of %s)", s, strings.Join(ruleNames, ", "))
		}
	}
	return s
}

// required reports key's absence from m as an error.
func (d *decoder) required(path string, m object, key, want string) (any, bool) {
	v, ok := m.get(key)
	if !ok {
		d.fail(join(path, key), "missing (want %s)", want)
	}
	return v, ok
}

func (d *decoder) side(path string, v any) *statetrack.Side {
	i, ok := d.oneOf(path, v, "side", "client", "server")
	if !ok {
		return nil
	}
	s := []statetrack.Side{statetrack.Client, statetrack.Server}[i]
	return &s
}

func (d *decoder) state(path string, v any) statetrack.State {
	s, _ := named(d, statetrack.ParseState)(path, v)
	return s
}

func (d *decoder) follows(path string, v any, ruleNames []string) *expect.Follows {
	f := &expect.Follows{}
	m, ok := d.object(path, v, "rule", "packet", "state", "from", "closer", "nth", "within")
	if !ok {
		return f
	}
	if v, ok := d.required(path, m, "rule", "a rule's name"); ok {
		f.Rule = d.ruleName(join(path, "rule"), v, ruleNames)
	}
	waitsState := false
	if v, ok := d.required(path, m, "packet", "a packet kind, or state"); ok {
		p := join(path, "packet")
		if s, isStr := v.(string); isStr && lower(s) == packetState {
			waitsState = true
		} else {
			f.Packet, _ = named(d, statetrack.ParseKind)(p, v)
		}
	}
	if v, ok := m.get("state"); ok {
		if !waitsState {
			d.fail(join(path, "state"), "only with packet: state")
		} else {
			f.State = d.state(join(path, "state"), v)
		}
	} else if waitsState {
		d.fail(join(path, "state"), "missing (packet: state waits for the receiver to reach a state)")
	}
	if v, ok := m.get("from"); ok {
		f.From = d.side(join(path, "from"), v)
	}
	if v, ok := m.get("closer"); ok {
		p := join(path, "closer")
		if i, ok := d.oneOf(p, v, "closer", "active", "passive"); ok {
			f.Closer = []statetrack.Closer{statetrack.Active, statetrack.Passive}[i]
		}
		mt := rules.Match{Closer: f.Closer}
		if f.Packet != 0 {
			mt.Packets = []statetrack.Kind{f.Packet}
		}
		if err := mt.CheckCloser(); err != nil {
			d.fail(p, "%v", err)
		} else if waitsState {
			d.fail(p, "only with a packet kind")
		}
	}
	if v, ok := m.get("nth"); ok {
		n, _ := d.uint(join(path, "nth"), v, 1, math.MaxUint32)
		f.Nth = uint32(n)
	}
	if v, ok := d.required(path, m, "within", "a duration such as 2s"); ok {
		f.Within = d.positiveDuration(join(path, "within"), v, 0)
	}
	return f
}

func (d *decoder) never(path string, v any) *expect.Never {
	n := &expect.Never{}
	m, ok := d.object(path, v, "state", "longer-than")
	if !ok {
		return n
	}
	if v, ok := d.required(path, m, "state", "a state such as LAST_ACK"); ok {
		n.State = d.state(join(path, "state"), v)
	}
	if v, ok := d.required(path, m, "longer-than", "a duration such as 5s"); ok {
		n.LongerThan, _ = d.duration(join(path, "longer-than"), v)
	}
	return n
}

func (d *decoder) reaches(path string, v any) *expect.Reaches {
	r := &expect.Reaches{}
	m, ok := d.object(path, v, "state", "from", "connections")
	if !ok {
		return r
	}
	if v, ok := d.required(path, m, "state", "a state such as TIME_WAIT"); ok {
		r.State = d.state(join(path, "state"), v)
	}
	if v, ok := m.get("from"); ok {
		r.From = d.side(join(path, "from"), v)
	}
	if v, ok := m.get("connections"); ok {
		p := join(path, "connections")
		if s, isStr := v.(string); isStr && lower(s) == "all" {
			r.Connections = 0
		} else if _, _, _, problem := integer(v); problem != "" {
			d.fail(p, "want all or a number of connections, got %s", describe(v))
		} else {
			r.Connections, _ = d.uint(p, v, 1, math.MaxUint64)
		}
	}
	return r
}

func (d *decoder) hits(path string, v any, ruleNames []string) *expect.Hits {
	h := &expect.Hits{}
	m, ok := d.object(path, v, "rule", "min", "max")
	if !ok {
		return h
	}
	if v, ok := d.required(path, m, "rule", "a rule's name"); ok {
		h.Rule = d.ruleName(join(path, "rule"), v, ruleNames)
	}
	bound := func(key string) *uint64 {
		v, ok := m.get(key)
		if !ok {
			return nil
		}
		n, ok := d.uint(join(path, key), v, 0, math.MaxUint64)
		if !ok {
			return nil
		}
		return &n
	}
	h.Min, h.Max = bound("min"), bound("max")
	_, hasMin := m.get("min")
	_, hasMax := m.get("max")
	switch {
	case !hasMin && !hasMax:
		d.fail(path, "want min, max or both")
	case h.Min != nil && h.Max != nil && *h.Min > *h.Max:
		d.fail(join(path, "max"), "%d is less than min %d", *h.Max, *h.Min)
	}
	return h
}

func (d *decoder) exit(path string, v any) *expect.Exit {
	if s, isStr := v.(string); isStr && lower(s) == "nonzero" {
		return &expect.Exit{Nonzero: true}
	}
	if _, _, _, problem := integer(v); problem != "" {
		d.fail(path, "want an exit status 0-255 or nonzero, got %s", describe(v))
		return &expect.Exit{}
	}
	n, _ := d.uint(path, v, 0, 255)
	return &expect.Exit{Status: int(n)}
}
