package rules

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ActionType is what a rule does to a packet it matches. Everything the
// rest of tcpchaos needs to know about an action type (its name, how it is
// written in a config, how it reads in words, whether it holds, drops or
// copies the packet) is in this file, so that a new action is added here.
type ActionType uint8

// Actions.
const (
	// Accept lets the packet through untouched (a rule that exempts
	// packets from the rules after it).
	Accept ActionType = iota
	// Drop discards the packet.
	Drop
	// Delay holds the packet for Delay ± Jitter, then lets it through.
	Delay
	// Duplicate lets the packet through and sends Copies copies of it
	// After later.
	Duplicate
	// Reset drops the packet and sends an RST to the endpoints in
	// Action.Reset (Verdict.Resets are the RSTs).
	Reset
	// Blackhole drops, from the packet on, every packet of its connection
	// travelling in the directions of Action.Blackhole, until Action.For
	// ends (see blackhole.go).
	Blackhole
)

// MaxCopies bounds a duplicate action's copies: a typo must not turn one
// packet into a flood.
const MaxCopies = 1000

// NumActionTypes is the number of action types, for arrays indexed by
// ActionType.
const NumActionTypes = len(actionTypes)

// actionType is what one ActionType is and does.
type actionType struct {
	name string
	// done says in words what happened to a packet, with a mark for the
	// ladder diagram ("✗ dropped"); accept has no mark.
	done string
	// dropped: the packet never reaches its receiver. held: it reaches it
	// when the hold ends. copies: copies of it are sent later. resets:
	// RSTs are sent in its stead. darkens: the connection's later packets
	// in some direction are dropped too (Decision.Dark).
	dropped, held, copies, resets, darkens bool
	// params renders the action's parameters after its name (" 300ms±20ms").
	params func(a Action) string
}

var actionTypes = [...]actionType{
	Accept: {name: "accept", done: "accepted"},
	Drop:   {name: "drop", done: "✗ dropped", dropped: true},
	Delay: {name: "delay", done: "⧗ delayed", held: true, params: func(a Action) string {
		if a.Jitter > 0 {
			return fmt.Sprintf(" %s±%s", a.Delay, a.Jitter)
		}
		return fmt.Sprintf(" %s", a.Delay)
	}},
	Duplicate: {name: "duplicate", done: "⧉ duplicated", copies: true, params: func(a Action) string {
		return fmt.Sprintf(" ×%d after %s", a.Copies, a.After)
	}},
	Reset: {name: "reset", done: "↯ reset", dropped: true, resets: true, params: func(a Action) string {
		if a.OutsideWindow {
			return " " + a.Reset.String() + " outside the window"
		}
		return " " + a.Reset.String()
	}},
	Blackhole: {name: "blackhole", done: "● blackholed", dropped: true, darkens: true, params: func(a Action) string {
		if a.For > 0 {
			return " " + a.Blackhole.Direction() + " for " + a.For.String()
		}
		return " " + a.Blackhole.Direction()
	}},
}

func (t ActionType) info() *actionType {
	if int(t) < len(actionTypes) {
		return &actionTypes[t]
	}
	return &actionTypes[Accept]
}

// ActionTypes returns every action type in order (Accept first).
func ActionTypes() []ActionType {
	ts := make([]ActionType, len(actionTypes))
	for i := range ts {
		ts[i] = ActionType(i)
	}
	return ts
}

// String returns the action's name: "accept", "drop", "delay",
// "duplicate", "reset" or "blackhole".
func (t ActionType) String() string { return t.info().name }

// ParseActionType parses an action's name as String returns it.
func ParseActionType(name string) (ActionType, error) {
	for i := range actionTypes {
		if actionTypes[i].name == name {
			return ActionType(i), nil
		}
	}
	return Accept, fmt.Errorf("unknown action %q", name)
}

// Faulty reports whether the action changes what the receiver sees: every
// action but Accept.
func (t ActionType) Faulty() bool {
	i := t.info()
	return i.dropped || i.held || i.copies || i.resets || i.darkens
}

// Darkens reports whether the action drops the connection's later packets
// in some direction too (Decision.Dark applies).
func (t ActionType) Darkens() bool { return t.info().darkens }

// SendsResets reports whether RSTs are sent in the packet's stead
// (Verdict.Resets are the RSTs).
func (t ActionType) SendsResets() bool { return t.info().resets }

// Delivers reports whether the packet reaches its receiver (at once or
// after a hold); only a dropped packet does not.
func (t ActionType) Delivers() bool { return !t.info().dropped }

// DeliversNow reports whether the packet reaches its receiver at once
// (accept, duplicate).
func (t ActionType) DeliversNow() bool { return t.Delivers() && !t.Holds() }

// Holds reports whether the packet is held before it is let through
// (Decision.Hold applies).
func (t ActionType) Holds() bool { return t.info().held }

// SendsCopies reports whether copies of the packet are sent after it
// (Decision.Copies and Decision.After apply).
func (t ActionType) SendsCopies() bool { return t.info().copies }

// Action is a rule's action and its parameters.
type Action struct {
	Type ActionType
	// Delay and Jitter: the packet is held for Delay plus a uniformly
	// drawn offset in [-Jitter, +Jitter] (never less than zero).
	Delay, Jitter time.Duration
	// Copies is how many copies Duplicate sends (at least 1).
	Copies uint32
	// After is when the copies are sent, counted from the original.
	After time.Duration
	// Reset names the endpoints a Reset sends its RST to; OutsideWindow
	// sends each one sequence number past the exact match, inside the
	// window, which a stack following RFC 5961 §3.2 answers with a
	// challenge ACK instead of closing.
	Reset         Endpoints
	OutsideWindow bool
	// Blackhole names the directions a Blackhole darkens, by the
	// endpoint the packets travel to (ToClient: the server's packets);
	// For, when positive, is how long until the connection heals.
	Blackhole Endpoints
	For       time.Duration
}

// String describes the action in words, e.g. "drop", "delay 300ms±20ms" or
// "duplicate ×2 after 3s".
func (a Action) String() string {
	i := a.Type.info()
	if i.params == nil {
		return i.name
	}
	return i.name + i.params(a)
}

// Note says in words what the decision did to a packet, e.g. "✗ dropped",
// "⧗ delayed 300ms" (the hold drawn) or "⧉ duplicated ×2 after 3s".
func (d Decision) Note() string {
	i := d.Action.info()
	if i.params == nil {
		return i.done
	}
	return i.done + i.params(Action{Type: d.Action, Delay: d.Hold, Copies: d.Copies, After: d.After,
		Reset: d.Reset, OutsideWindow: d.OutsideWindow, Blackhole: d.Dark, For: d.For})
}

// ParamKind is the kind of value an action parameter takes.
type ParamKind uint8

// Parameter kinds.
const (
	// Duration is a non-negative time.Duration.
	Duration ParamKind = iota
	// Count is an integer in [Param.Min, Param.Max].
	Count
	// Flag is true or false.
	Flag
	// Choice is one of Param.Choices, any case; Value.Count is its index.
	Choice
)

// Value is a decoded parameter value: the field of its Param's kind is set.
type Value struct {
	Duration time.Duration
	Count    uint64
	Flag     bool
}

// Param is one key of an action written as a map.
type Param struct {
	// Key is the parameter's key, e.g. "delay" or "jitter".
	Key  string
	Kind ParamKind
	// Min and Max bound a Count.
	Min, Max uint64
	// Choices are the words a Choice takes.
	Choices []string
	// placeholder stands for the value in Syntax ("D", "true").
	placeholder string
	// set stores v in a, or returns why v is refused.
	set func(a *Action, v Value) error
}

// Set stores v, a value of p's kind, in a, or returns why it is refused.
// Set the parameters of a form in order: a later one may be checked
// against an earlier one (a jitter against its delay).
func (p Param) Set(a *Action, v Value) error { return p.set(a, v) }

// Form is one way to write an action in a config: a bare name ("drop"), or
// a map whose first key is required and tells the form ({delay: 300ms,
// jitter: 20ms}).
type Form struct {
	Type ActionType
	// Params are the keys of a map form, the required one first; none for
	// a bare name.
	Params []Param
	// needs, for the map form of an action without a bare name, says what
	// its bare name lacks ("a duration, e.g. {delay: 300ms}").
	needs string
}

// forms are the ways to write an action, in the order messages list them.
var forms = []Form{
	{Type: Drop},
	{Type: Accept},
	{Type: Delay, needs: "a duration, e.g. {delay: 300ms}", Params: []Param{
		{Key: "delay", Kind: Duration, placeholder: "D", set: func(a *Action, v Value) error {
			if v.Duration == 0 {
				return errors.New("must be positive")
			}
			a.Delay = v.Duration
			return nil
		}},
		{Key: "jitter", Kind: Duration, placeholder: "J", set: func(a *Action, v Value) error {
			// a.Delay is zero when the delay was refused: nothing to
			// compare with.
			if a.Delay > 0 && v.Duration > a.Delay {
				return fmt.Errorf("%v is more than the delay %v", v.Duration, a.Delay)
			}
			a.Jitter = v.Duration
			return nil
		}},
	}},
	{Type: Duplicate, needs: "a count, e.g. {duplicate: 1, after: 3s}", Params: []Param{
		{Key: "duplicate", Kind: Count, Min: 1, Max: MaxCopies, placeholder: "N", set: func(a *Action, v Value) error {
			a.Copies = uint32(v.Count)
			return nil
		}},
		{Key: "after", Kind: Duration, placeholder: "D", set: func(a *Action, v Value) error {
			a.After = v.Duration
			return nil
		}},
	}},
	{Type: Reset, needs: "the endpoints, e.g. {reset: both}", Params: []Param{
		{Key: "reset", Kind: Choice, Choices: endpointNames[1:], placeholder: "client|server|both",
			set: func(a *Action, v Value) error {
				a.Reset = Endpoints(v.Count + 1)
				return nil
			}},
		{Key: "window", Kind: Choice, Choices: []string{"exact", "outside"}, placeholder: "exact|outside",
			set: func(a *Action, v Value) error {
				a.OutsideWindow = v.Count == 1
				return nil
			}},
	}},
	{Type: Blackhole, needs: "the directions, e.g. {blackhole: both}", Params: []Param{
		{Key: "blackhole", Kind: Choice, Choices: directionNames[1:], placeholder: "both|to-client|to-server",
			set: func(a *Action, v Value) error {
				a.Blackhole = directions[v.Count+1]
				return nil
			}},
		{Key: "for", Kind: Duration, placeholder: "D", set: func(a *Action, v Value) error {
			if v.Duration == 0 {
				return errors.New("must be positive (leave it out for a blackhole that never heals)")
			}
			a.For = v.Duration
			return nil
		}},
	}},
	{Type: Drop, Params: []Param{
		{Key: "drop", Kind: Flag, placeholder: "true", set: func(_ *Action, v Value) error {
			if !v.Flag {
				return errors.New("drop: false means nothing; use accept")
			}
			return nil
		}},
	}},
}

// MapForms returns the forms written as maps, in order.
func MapForms() []Form {
	var fs []Form
	for _, f := range forms {
		if len(f.Params) > 0 {
			fs = append(fs, f)
		}
	}
	return fs
}

// Key returns the key that tells a map form (its first parameter's), or
// "" for a bare name.
func (f Form) Key() string {
	if len(f.Params) == 0 {
		return ""
	}
	return f.Params[0].Key
}

// String renders the form as messages show it: "drop", "{delay: D,
// jitter: J}".
func (f Form) String() string { return f.syntax(len(f.Params)) }

// syntax renders the form with its first n parameters.
func (f Form) syntax(n int) string {
	if len(f.Params) == 0 {
		return f.Type.String()
	}
	parts := make([]string, n)
	for i, p := range f.Params[:n] {
		parts[i] = p.Key + ": " + p.placeholder
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Syntax lists every form for messages: "drop, accept, {delay: D, jitter:
// J}, {duplicate: N, after: D}, {reset: client|server|both, window:
// exact|outside}, {blackhole: both|to-client|to-server, for: D} or {drop:
// true}".
func Syntax() string {
	parts := make([]string, len(forms))
	for i, f := range forms {
		parts[i] = f.String()
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

// BriefSyntax lists each action once, in its first form with its required
// key only: "drop, accept, {delay: D}, {duplicate: N}, {reset:
// client|server|both}, {blackhole: both|to-client|to-server}".
func BriefSyntax() string {
	var parts []string
	seen := make(map[ActionType]bool, len(actionTypes))
	for _, f := range forms {
		if !seen[f.Type] {
			seen[f.Type] = true
			parts = append(parts, f.syntax(min(len(f.Params), 1)))
		}
	}
	return strings.Join(parts, ", ")
}

// ParseAction parses an action written as a bare name ("drop", any case).
// The name of an action that needs parameters is refused with what it
// needs ("delay needs a duration, e.g. {delay: 300ms}").
func ParseAction(s string) (Action, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for _, f := range forms {
		switch {
		case f.Type.String() != name:
		case len(f.Params) == 0:
			return Action{Type: f.Type}, nil
		case f.needs != "":
			return Action{}, fmt.Errorf("%s needs %s", name, f.needs)
		}
	}
	return Action{}, fmt.Errorf("unknown action %q (want %s)", s, Syntax())
}
