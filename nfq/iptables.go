//go:build linux

package nfq

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// The rules live in the mangle table, in chains of tcpchaos's own:
//
//	FORWARD (forward mode), or OUTPUT and INPUT ! -i lo (local mode)
//	  -p tcp -j TCPCHAOS
//	TCPCHAOS        injected copies (InjectMark) return; then the hosts:
//	                -s P / -d P -j TCPCHAOS-PORTS for each prefix of the
//	                family, or an unconditional jump without hosts
//	TCPCHAOS-PORTS  -m multiport --ports LIST -j TCPCHAOS-QUEUE (either
//	                direction), or an unconditional jump without ports
//	TCPCHAOS-QUEUE  the queueing decision: with Quiet, see below; then
//	                -j NFQUEUE ... --queue-bypass
//
// mangle runs before filter, so a packet tcpchaos drops never reaches the
// host's firewall rules, and it is where connmark rules live.
//
// Quiet connections: the data phase of a quiet connection, and the rest
// of a close that the verdict of its first FIN lets go quiet (a quiet
// close), bypass the queue, with mark bits of tcpchaos's own: in the
// connection mark QuietMark (Q: the connection is quiet), EndingMark (E:
// it sent its first FIN, or an RST, since its last SYN) and FinalMark (F:
// a FIN after the first, or an RST); in the packet mark VerdictMark (V: tcpchaos gave
// this packet its verdict), and Q again (the verdict's decision). TCPCHAOS
// starts with
//
//	-p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark Q/Q -j RETURN
//
// (first, so that a quiet phase costs one match) and TCPCHAOS-QUEUE
// becomes:
//
//	-p tcp --tcp-flags SYN SYN -j CONNMARK --set-xmark 0/Q|E|F
//	-p tcp --tcp-flags RST RST -j CONNMARK --set-xmark E|F/Q|E|F
//	-p tcp --tcp-flags FIN FIN -m connmark --mark E/E -j CONNMARK --set-xmark F/Q|F
//	-p tcp --tcp-flags FIN FIN -j CONNMARK --set-xmark E/Q|E
//	-j NFQUEUE ...
//
// so a quiet connection's packets pass unqueued until its next SYN, FIN
// or RST, which clears Q in the kernel itself before it is queued: the
// packets after it in its direction are queued behind it and cannot
// overtake it. A SYN starts afresh (a new incarnation of the tuple); the
// first FIN sets E; a FIN when E is set (the peer's, or a retransmission)
// and an RST set F, which only a SYN clears. Every accept verdict carries
// V, with Q when the pipeline let the connection go quiet, and the filter
// table (which runs after mangle, on the same hook, when the verdict
// re-injects the packet) copies the decision into the connection mark and
// clears tcpchaos's bits from the packet mark:
//
//	filter FORWARD (or OUTPUT, INPUT ! -i lo) -m mark --mark V/V -j TCPCHAOS
//	filter TCPCHAOS  -m connmark ! --mark E/E -j CONNMARK --save-mark --nfmask Q --ctmask Q
//	                 -p tcp --tcp-flags FIN FIN -m connmark --mark E/E|F -j CONNMARK --save-mark --nfmask Q --ctmask Q
//	                 -m connmark --mark E/E -m mark --mark 0/Q -j CONNMARK --set-xmark 0/Q
//	                 -j MARK --set-xmark 0/Q|V
//
// (This kernel cannot set the connection mark from a verdict:
// NETFILTER_NETLINK_GLUE_CT is not built.) Before the first FIN every
// verdict sets or clears Q. After it, only the verdict of a FIN while F is
// clear, that is of the first FIN itself, can set Q again; any other
// verdict without Q clears it. Which packets the pipeline lets go quiet
// is its decision (rules.Verdict.Quiet); the chains hold whatever it
// decides to these orders:
//
//   - A quiet close: the first FIN is queued with Q cleared, and its
//     verdict with Q sets it before the FIN leaves the router, so the
//     peer's ACK of it, sent after, bypasses the queue, and so do the
//     data and ACKs of a half-close, both ways. The second FIN sets F and
//     clears Q before it is queued; the final ACK, sent after it was
//     delivered, and everything after are queued. A close whose first
//     FIN's verdict carries no Q is queued from the FIN on, as before any
//     quiet close existed.
//   - A stale verdict: the verdict of a packet queued before the FIN but
//     re-injected after it must not make the connection quiet again, or
//     the peer's packets after the FIN would bypass the queue (seen in 3
//     of 10,000 connections before E existed): it is not a FIN, so with E
//     set it cannot set Q.
//   - A FIN retransmission finds E set and sets F: from then on the
//     close is queued, and neither the retransmission's verdict nor the
//     first FIN's, if re-injected after it, can make it quiet again.
//     (tcpchaos's own copies of a duplicated FIN return at InjectMark,
//     before the queue chain: they change no mark.)
//   - A simultaneous close: of two FINs crossing, the second to pass
//     mangle sets F, whether or not the first one's verdict came before
//     it: a verdict re-injected later finds F and leaves Q clear.
//   - A verdict without Q after a quiet first FIN ends the quiet close,
//     as one does the quiet data phase before any FIN: a packet of the
//     connection queued between the FIN and its verdict (a streaming
//     peer's, even in the FIN's own burst) has a verdict with Q
//     (rules.Verdict.Closing) unless the live path declines it, which
//     wakes the connection in the tracker, and in the kernel too once its
//     verdict comes; and a reload that takes out the
//     bypass (SetBypass) wakes a quiet close as it wakes a quiet data
//     phase.
//   - Two CPUs: xt_connmark reads and writes the connection mark without
//     an atomic operation, so the second FIN going through mangle on one
//     CPU while the first FIN's verdict goes through filter on another
//     can leave Q set after the second FIN cleared it, with F or without
//     (a lost update); so can two FINs crossing mangle at once, each
//     finding E clear (no F). The first window is one rule's evaluation;
//     the second spans two rules (the FIN rules' match of E, then the
//     set), and a test that crosses FINs on purpose at the router met
//     it, presumably, once in some 700 closes, a third of them crossing
//     (TestQuietCloseCrossing with the second FIN's verdict let go quiet,
//     as the pipeline never does: the final ACK bypassed the queue). The
//     second FIN's own verdict, without Q (the
//     pipeline does not let a connection go quiet there), then clears Q;
//     the final ACK is sent after that verdict, but in the crossing an
//     ACK of the first FIN may pass before it. If tcpchaos drops that
//     FIN, its retransmission clears Q in mangle.
//
// A quiet connection's gaps cannot be told: its data phase, keepalives
// included, passes unseen, and the kernel does not know the gap either
// when mangle sees a packet (conntrack refreshes the connection's timeout
// at a higher hook priority, so -m conntrack --ctexpire on the packet that
// ends an idle period sees a fresh timeout; measured). So rules that
// select on the idle gap, like rules on the data phase's kinds, keep every
// connection from going quiet (rules.Set.Quietable): without them the
// plan above is unchanged.
const (
	// Table is the iptables table holding tcpchaos's queueing rules.
	Table = "mangle"
	// FilterTable holds, with quiet connections, the chain that saves
	// tcpchaos's decision into the connection mark.
	FilterTable = "filter"
	// Chain is tcpchaos's entry chain. Every chain named Chain or
	// Chain+"-…" in Table or FilterTable belongs to tcpchaos (Cleanup
	// removes them all).
	Chain = "TCPCHAOS"

	chainPorts = Chain + "-PORTS"
	chainQueue = Chain + "-QUEUE"
)

// The mark bits of quiet connections. Those of the packet mark
// (VerdictMark, and QuietMark in a verdict) are clear in InjectMark, so
// the exact match of injected copies never takes a verdict's mark for
// one, and neither is set in a copy; those of the connection mark only
// (EndingMark, FinalMark) are set in InjectMark, which no rule compares
// with a connection mark (none copies the connection mark into a packet
// mark). Packet marks of other programs keep their other bits through
// tcpchaos.
const (
	// QuietMark, in a connection mark, lets the connection's packets
	// without SYN, FIN or RST bypass the queue (bit 27).
	QuietMark uint32 = 0x08000000
	// VerdictMark, in a packet mark, says that tcpchaos accepted the
	// packet and that its QuietMark bit is tcpchaos's decision for the
	// connection (bit 25).
	VerdictMark uint32 = 0x02000000
	// EndingMark, in a connection mark, says that the connection sent a
	// FIN or an RST since its last SYN: no verdict but that of its first
	// FIN makes it quiet again (bit 26).
	EndingMark uint32 = 0x04000000
	// FinalMark, in a connection mark, says that the connection sent a
	// FIN after its first (the peer's, or a retransmission) or an RST
	// since its last SYN: no verdict makes it quiet again (bit 28).
	FinalMark uint32 = 0x10000000
)

// tables lists the tables tcpchaos puts chains in.
var tables = []string{Table, FilterTable}

// multiportMax is how many ports one multiport match takes.
const multiportMax = 15

// iptablesWait is how long, in seconds, a command waits for the xtables
// lock held by another program.
const iptablesWait = 10

// Errors of Install and Cleanup; match them with errors.Is.
var (
	// ErrNoBinary: iptables or ip6tables is not in PATH.
	ErrNoBinary = errors.New("binary not found in PATH (install the iptables package)")
	// ErrLeftover: tcpchaos chains exist already, left by a killed run.
	ErrLeftover = errors.New("tcpchaos rules are already installed, probably left by a killed run: remove them with `tcpchaos cleanup`")
	// ErrNoQueueTarget: the kernel refused the NFQUEUE rule.
	ErrNoQueueTarget = errors.New("the kernel refused the NFQUEUE target (is xt_NFQUEUE / CONFIG_NETFILTER_XT_TARGET_NFQUEUE available?)")
)

// InstallOptions tunes which packets are queued.
type InstallOptions struct {
	// Quiet lets the data phase of quiet connections bypass the queue,
	// and a quiet close after its first FIN (see the chain layout
	// above): the Queue must mark its verdicts (Options.Quiet). It loses
	// nothing the rules need: every SYN, SYN-ACK and FIN and the final
	// ACK are always queued, and a connection goes quiet only when no
	// rule can act on its data phase or on idle gaps (from its SYN-ACK,
	// letting its third ACK pass too, and in its close, only when that
	// packet's verdict says so). (Queueing only SYN, FIN and RST
	// instead would lose the handshake's and the close's ACKs and reorder
	// them behind queued FINs: a few ECONNRESET in tens of thousands of
	// connections were measured so.) The zero value queues every packet.
	Quiet bool
	// Blackhole installs what keeps blackholed connections dark in the
	// kernel (see the chain layout above): the Queue must mark the
	// verdicts that start a blackhole (Options.Blackhole).
	Blackhole bool
}

// Interception is a set of installed rules, IPv4 and IPv6. Remove takes them
// out again.
type Interception struct {
	families []*family
	quiet    bool // installed with InstallOptions.Quiet
	dark     bool // installed with InstallOptions.Blackhole
	gen      int  // Updates so far: names the ports chains
}

// Darkens reports whether the interception was installed with what keeps
// blackholed connections dark in the kernel (InstallOptions.Blackhole).
func (in *Interception) Darkens() bool { return in.dark }

// head is how many rules Chain starts with before the quiet bypass: the
// dark drops, when installed.
func (in *Interception) head() int {
	if in.dark {
		return len(ctdirs)
	}
	return 0
}

// family is the installation in one address family, with what was done so
// far (for Remove and for the rollback of a failed Install).
type family struct {
	plan    familyPlan
	ipt     *iptables.IPTables
	created []chainRef // own chains created
	jumps   []rule     // jumps inserted into built-in chains
	// bypass: bypassRule is in place (SetBypass).
	bypass bool
	// hosts are the host rules in Chain, ports the ports chain they jump
	// to (replaced by Update).
	hosts []rule
	ports string
}

// chainRef names a chain in a table.
type chainRef struct{ table, name string }

// String renders the chain as "NAME", or "-t TABLE NAME" outside Table.
func (c chainRef) String() string {
	if c.table == Table {
		return c.name
	}
	return "-t " + c.table + " " + c.name
}

// rule is one rule: its table and chain, and its specification.
type rule struct {
	chainRef
	spec []string
}

// mangle and filter make rules of the two tables.
func mangle(chain string, spec ...string) rule { return rule{chainRef{Table, chain}, spec} }
func filter(chain string, spec ...string) rule { return rule{chainRef{FilterTable, chain}, spec} }

// String renders the rule as "CHAIN spec…" (prefixed by "-t TABLE"
// outside Table) for error messages.
func (r rule) String() string { return r.chainRef.String() + " " + strings.Join(r.spec, " ") }

// familyPlan is what Install adds in one address family.
type familyPlan struct {
	proto  iptables.Protocol
	binary string         // "iptables" or "ip6tables"
	hosts  []netip.Prefix // of the family
	chains []chainRef     // own chains, created first
	rules  []rule         // the own chains' rules, appended in order
	// queueRule indexes the NFQUEUE rule in rules.
	queueRule int
	// jumps go into built-in chains, at position 1, last of all: the
	// interception starts only once its chains are complete.
	jumps []rule
}

// Install adds the interception rules for cfg, in IPv4 and IPv6, to the
// network namespace of the calling thread (see netlab.Enter; Remove must
// run in the same namespace). It is all or nothing: on failure it removes
// what it added and returns an error naming what failed. It refuses, with
// ErrLeftover, when tcpchaos chains exist already.
//
// When cfg.Hosts has prefixes of one family only, the other family is left
// untouched: none of its packets is intercepted.
//
// With InstallOptions.Quiet or InstallOptions.Blackhole, before the rules
// go in it clears tcpchaos's bits from the mark of every conntrack entry
// of the namespace, as Remove does: those a killed run left, which the
// new rules would take for their own. When only that failed, Install
// returns the Interception, in force, together with an error matching
// ErrMarksLeft (a warning): the caller removes it in the end as after a
// nil error.
func Install(cfg Intercept, opts InstallOptions) (*Interception, error) {
	plans, err := plan(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("install interception: %w", err)
	}
	if err := netlab.CheckNetAdmin(); err != nil {
		return nil, fmt.Errorf("install interception: %w", err)
	}
	in := &Interception{quiet: opts.Quiet, dark: opts.Blackhole}
	for _, p := range plans {
		ipt, err := newIPTables(p.proto, p.binary)
		if err != nil {
			return nil, fmt.Errorf("install interception: %w", err)
		}
		for _, table := range tables {
			if own, err := ownChains(ipt, table); err != nil {
				return nil, fmt.Errorf("install interception: %s: %w", p.binary, err)
			} else if len(own) > 0 {
				return nil, fmt.Errorf("install interception: %s: chains %s exist in table %s: %w",
					p.binary, strings.Join(own, ", "), table, ErrLeftover)
			}
		}
		in.families = append(in.families, &family{plan: p, ipt: ipt, bypass: opts.Quiet,
			hosts: hostRules(p.hosts, chainPorts), ports: chainPorts})
	}
	var marks error
	if opts.Quiet || opts.Blackhole {
		marks = clearConnMarks()
	}
	for _, f := range in.families {
		if err := f.install(); err != nil {
			if rerr := in.Remove(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
			return nil, fmt.Errorf("install interception: %w", err)
		}
	}
	if marks != nil {
		return in, fmt.Errorf("install interception: %w", withMarks(nil, marks))
	}
	return in, nil
}

// install creates the family's chains, fills them, then adds the jumps,
// recording each step for Remove.
func (f *family) install() error {
	p := f.plan
	for _, c := range p.chains {
		if err := f.ipt.NewChain(c.table, c.name); err != nil {
			return fmt.Errorf("%s: create chain %s in table %s: %w", p.binary, c.name, c.table, err)
		}
		f.created = append(f.created, c)
	}
	for i, r := range p.rules {
		if err := f.ipt.Append(r.table, r.name, r.spec...); err != nil {
			if i == p.queueRule {
				return fmt.Errorf("%s: add rule %s to table %s: %w: %w", p.binary, r, r.table, ErrNoQueueTarget, err)
			}
			return fmt.Errorf("%s: add rule %s to table %s: %w", p.binary, r, r.table, err)
		}
	}
	for _, j := range p.jumps {
		if err := f.ipt.Insert(j.table, j.name, 1, j.spec...); err != nil {
			return fmt.Errorf("%s: add rule %s to table %s: %w", p.binary, j, j.table, err)
		}
		f.jumps = append(f.jumps, j)
	}
	return nil
}

// Remove deletes every rule and chain Install added, in the calling
// thread's network namespace, and, when installed with
// InstallOptions.Quiet or InstallOptions.Blackhole, then clears
// tcpchaos's bits (QuietMark, EndingMark, FinalMark, DarkOriginalMark,
// DarkReplyMark) from the mark of every conntrack entry there, IPv4 and
// IPv6, keeping the other bits (ctmarks.go). It goes on past failures and
// returns them all; when clearing the bits was the only one, the error
// matches ErrMarksLeft, a warning. A second call does nothing.
func (in *Interception) Remove() error {
	if in.families == nil {
		return nil
	}
	var errs []error
	for _, f := range slices.Backward(in.families) {
		errs = append(errs, f.remove())
	}
	in.families = nil
	var marks error
	if in.quiet || in.dark {
		marks = clearConnMarks()
	}
	return withMarks(errors.Join(errs...), marks)
}

// remove undoes what install recorded: jumps first, so that nothing enters
// the chains while they are flushed and deleted.
func (f *family) remove() error {
	var errs []error
	for _, j := range slices.Backward(f.jumps) {
		if err := f.ipt.Delete(j.table, j.name, j.spec...); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("%s: delete rule %s from table %s: %w", f.plan.binary, j, j.table, err))
		}
	}
	errs = append(errs, deleteChains(f.ipt, f.plan.binary, f.created))
	f.jumps, f.created = nil, nil
	return errors.Join(errs...)
}

// Cleanup removes every tcpchaos chain, and every rule jumping to one, from
// the calling thread's network namespace, in IPv4 and IPv6: what a killed
// run left behind. Then it clears tcpchaos's bits from the mark of every
// conntrack entry there, as Remove does, whether or not rules were left
// (a run killed after removing its rules leaves the bits alone). Nothing
// there is no error, so it is safe to run twice; a family whose binary
// is missing is skipped (nothing can have been installed through it).
// When clearing the bits was the only failure, the error matches
// ErrMarksLeft, a warning.
func Cleanup() error {
	if err := netlab.CheckNetAdmin(); err != nil {
		return fmt.Errorf("clean up interception: %w", err)
	}
	var errs []error
	for _, p := range []struct {
		proto  iptables.Protocol
		binary string
	}{{iptables.ProtocolIPv4, "iptables"}, {iptables.ProtocolIPv6, "ip6tables"}} {
		ipt, err := newIPTables(p.proto, p.binary)
		if errors.Is(err, ErrNoBinary) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("clean up interception: %w", err))
			continue
		}
		for _, table := range tables {
			if err := cleanupTable(ipt, p.binary, table); err != nil {
				errs = append(errs, fmt.Errorf("clean up interception: %w", err))
			}
		}
	}
	return withMarks(errors.Join(errs...), clearConnMarks())
}

// cleanupTable deletes the jumps into own chains from every other chain of
// the table (by rule number, last first), then the own chains.
func cleanupTable(ipt *iptables.IPTables, binary, table string) error {
	chains, err := ipt.ListChains(table)
	if err != nil {
		return fmt.Errorf("%s: list chains of table %s: %w", binary, table, err)
	}
	var own []chainRef
	for _, c := range chains {
		if isOwnChain(c) {
			own = append(own, chainRef{table, c})
		}
	}
	if len(own) == 0 {
		return nil
	}
	var errs []error
	for _, c := range chains {
		if isOwnChain(c) {
			continue
		}
		rules, err := ipt.List(table, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: list chain %s of table %s: %w", binary, c, table, err))
			continue
		}
		var jumps []int
		n := 0
		for _, r := range rules {
			if !strings.HasPrefix(r, "-A ") {
				continue
			}
			n++
			if jumpsToOwnChain(r) {
				jumps = append(jumps, n)
			}
		}
		for _, num := range slices.Backward(jumps) {
			if err := ipt.DeleteById(table, c, num); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete rule %d of chain %s in table %s: %w", binary, num, c, table, err))
			}
		}
	}
	errs = append(errs, deleteChains(ipt, binary, own))
	return errors.Join(errs...)
}

// deleteChains flushes all the chains, then deletes them (a chain can only
// be deleted once no rule refers to it).
func deleteChains(ipt *iptables.IPTables, binary string, chains []chainRef) error {
	var errs []error
	for _, c := range chains {
		if err := ipt.ClearChain(c.table, c.name); err != nil {
			errs = append(errs, fmt.Errorf("%s: flush chain %s in table %s: %w", binary, c.name, c.table, err))
		}
	}
	for _, c := range chains {
		if err := ipt.DeleteChain(c.table, c.name); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("%s: delete chain %s in table %s: %w", binary, c.name, c.table, err))
		}
	}
	return errors.Join(errs...)
}

// newIPTables finds the family's binary; a missing one is ErrNoBinary.
func newIPTables(proto iptables.Protocol, binary string) (*iptables.IPTables, error) {
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(iptablesWait))
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", binary, ErrNoBinary)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", binary, err)
	}
	return ipt, nil
}

// ownChains lists the tcpchaos chains present in table.
func ownChains(ipt *iptables.IPTables, table string) ([]string, error) {
	chains, err := ipt.ListChains(table)
	if err != nil {
		return nil, fmt.Errorf("list chains of table %s: %w", table, err)
	}
	return slices.DeleteFunc(chains, func(c string) bool { return !isOwnChain(c) }), nil
}

// isOwnChain reports whether a chain name is tcpchaos's.
func isOwnChain(name string) bool {
	return name == Chain || strings.HasPrefix(name, Chain+"-")
}

// jumpsToOwnChain reports whether a rule as "iptables -S" prints it jumps
// (-j) or goes (-g) to a tcpchaos chain.
func jumpsToOwnChain(r string) bool {
	f := strings.Fields(r)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && isOwnChain(f[i+1]) {
			return true
		}
	}
	return false
}

// isNotExist reports whether iptables failed because the rule or chain is
// already gone.
func isNotExist(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}

// plan computes the rules of each address family to be intercepted.
func plan(cfg Intercept, opts InstallOptions) ([]familyPlan, error) {
	queues := max(cfg.Queues, 1)
	if last := cfg.LastQueue(); last > 0xffff {
		return nil, fmt.Errorf("queues %d to %d: the last queue number exceeds 65535", cfg.Queue, last)
	}
	var hosts4, hosts6 []netip.Prefix
	for _, h := range cfg.Hosts {
		if h.Addr().Is4() {
			hosts4 = append(hosts4, h)
		} else {
			hosts6 = append(hosts6, h)
		}
	}
	var plans []familyPlan
	for _, fam := range []struct {
		proto  iptables.Protocol
		binary string
		hosts  []netip.Prefix
	}{{iptables.ProtocolIPv4, "iptables", hosts4}, {iptables.ProtocolIPv6, "ip6tables", hosts6}} {
		if len(cfg.Hosts) > 0 && len(fam.hosts) == 0 {
			continue // hosts of the other family only: intercept nothing here
		}
		p := familyPlan{
			proto:  fam.proto,
			binary: fam.binary,
			hosts:  fam.hosts,
			chains: []chainRef{{Table, Chain}, {Table, chainPorts}, {Table, chainQueue}},
			jumps:  jumps(Table, cfg.Mode, "-p", "tcp"),
		}
		if opts.Blackhole {
			p.rules = append(p.rules, darkDropRules()...)
		}
		if opts.Quiet {
			// First after the dark drops, so that a quiet connection's
			// data phase costs one match more: only intercepted
			// connections ever get the bit.
			p.rules = append(p.rules, bypassRule)
		}
		p.rules = append(p.rules, mangle(Chain, "-m", "mark", "--mark", hex(InjectMark), "-j", "RETURN"))
		p.rules = append(p.rules, hostRules(fam.hosts, chainPorts)...)
		p.rules = append(p.rules, portRules(chainPorts, cfg.Ports)...)
		if opts.Quiet {
			p.rules = append(p.rules, endQuietRules()...)
		}
		p.queueRule = len(p.rules)
		p.rules = append(p.rules, mangle(chainQueue, queueSpec(cfg.Queue, queues)...))
		if opts.Quiet || opts.Blackhole {
			p.chains = append(p.chains, chainRef{FilterTable, Chain})
			// Only packets with a verdict of tcpchaos's enter the chain.
			clear := VerdictMark
			if opts.Quiet {
				p.rules = append(p.rules, saveQuietRules()...)
				clear |= QuietMark
			}
			if opts.Blackhole {
				p.rules = append(p.rules, darkenRules()...)
				clear |= DarkSameMark | DarkOppositeMark
			}
			p.rules = append(p.rules, filter(Chain, "-j", "MARK", "--set-xmark", masked(0, clear)))
			p.jumps = append(p.jumps, jumps(FilterTable, cfg.Mode, "-m", "mark", "--mark", masked(VerdictMark, VerdictMark))...)
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// bypassRule lets the data phase of quiet connections bypass the queue.
// iptables-nft runs its connmark test as an xt match through nft_compat;
// a native nft rule in its place saves about 40 ns a packet, within the
// noise of a bulk transfer, and makes iptables-nft refuse to list the
// table, Cleanup's listing included (scripts/bench-bypass; README,
// Benchmarks).
var bypassRule = mangle(Chain, "-p", "tcp", "--tcp-flags", "SYN,FIN,RST", "NONE",
	"-m", "connmark", "--mark", masked(QuietMark, QuietMark), "-j", "RETURN")

// endQuietRules, in the queue chain ahead of the NFQUEUE rule, end a quiet
// phase in the connection mark before its packet is queued: a SYN starts
// afresh, an RST ends it for good, a FIN after the first (E set) ends it
// for good, the first FIN ends it until its own verdict.
func endQuietRules() []rule {
	const all = QuietMark | EndingMark | FinalMark
	return []rule{
		mangle(chainQueue, "-p", "tcp", "--tcp-flags", "SYN", "SYN",
			"-j", "CONNMARK", "--set-xmark", masked(0, all)),
		mangle(chainQueue, "-p", "tcp", "--tcp-flags", "RST", "RST",
			"-j", "CONNMARK", "--set-xmark", masked(EndingMark|FinalMark, all)),
		mangle(chainQueue, "-p", "tcp", "--tcp-flags", "FIN", "FIN", "-m", "connmark", "--mark", masked(EndingMark, EndingMark),
			"-j", "CONNMARK", "--set-xmark", masked(FinalMark, QuietMark|FinalMark)),
		mangle(chainQueue, "-p", "tcp", "--tcp-flags", "FIN", "FIN",
			"-j", "CONNMARK", "--set-xmark", masked(EndingMark, QuietMark|EndingMark)),
	}
}

// saveQuietRules, in the filter chain, copy a verdict's decision into the
// connection mark: every verdict's before the first FIN, then the first
// FIN's own; after it, any verdict without QuietMark clears the bit.
func saveQuietRules() []rule {
	save := []string{"-j", "CONNMARK", "--save-mark", "--nfmask", hex(QuietMark), "--ctmask", hex(QuietMark)}
	return []rule{
		filter(Chain, slices.Concat([]string{"-m", "connmark", "!", "--mark", masked(EndingMark, EndingMark)}, save)...),
		filter(Chain, slices.Concat([]string{"-p", "tcp", "--tcp-flags", "FIN", "FIN",
			"-m", "connmark", "--mark", masked(EndingMark, EndingMark|FinalMark)}, save)...),
		filter(Chain, "-m", "connmark", "--mark", masked(EndingMark, EndingMark), "-m", "mark", "--mark", masked(0, QuietMark),
			"-j", "CONNMARK", "--set-xmark", masked(0, QuietMark)),
	}
}

// hex renders a mark as iptables prints it.
func hex(v uint32) string { return fmt.Sprintf("%#x", v) }

// masked renders a mark value and its mask as iptables prints them.
func masked(v, mask uint32) string { return hex(v) + "/" + hex(mask) }

// jumps are the rules that send TCP into Chain of table: FORWARD in
// forward mode; OUTPUT and INPUT except from loopback in local mode, so
// that a loopback connection's packets are seen once, on output.
func jumps(table string, mode Mode, match ...string) []rule {
	to := slices.Concat(match, []string{"-j", Chain})
	if mode == Local {
		return []rule{
			{chainRef{table, "OUTPUT"}, to},
			{chainRef{table, "INPUT"}, append([]string{"!", "-i", "lo"}, to...)},
		}
	}
	return []rule{{chainRef{table, "FORWARD"}, to}}
}

// hostRules, in Chain, send the connections with an endpoint in one of
// hosts (all when there are none) to the ports chain portsChain.
func hostRules(hosts []netip.Prefix, portsChain string) []rule {
	if len(hosts) == 0 {
		return []rule{mangle(Chain, "-j", portsChain)}
	}
	var rs []rule
	for _, h := range hosts {
		for _, dir := range []string{"-s", "-d"} {
			rs = append(rs, mangle(Chain, dir, h.Masked().String(), "-j", portsChain))
		}
	}
	return rs
}

// portRules, in the ports chain portsChain, select the connections of the
// server ports, either direction (all when there are none).
func portRules(portsChain string, ports []uint16) []rule {
	if len(ports) == 0 {
		return []rule{mangle(portsChain, "-j", chainQueue)}
	}
	var rs []rule
	for chunk := range slices.Chunk(ports, multiportMax) {
		list := make([]string, len(chunk))
		for i, p := range chunk {
			list[i] = strconv.Itoa(int(p))
		}
		rs = append(rs, mangle(portsChain, "-p", "tcp", "-m", "multiport", "--ports", strings.Join(list, ","), "-j", chainQueue))
	}
	return rs
}

// queueSpec is the NFQUEUE target: one queue, or a flow-consistent balance
// over several; fail-open (--queue-bypass) when no program is bound.
func queueSpec(first, n uint16) []string {
	if n <= 1 {
		return []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(first)), "--queue-bypass"}
	}
	return []string{"-j", "NFQUEUE", "--queue-balance", fmt.Sprintf("%d:%d", first, int(first)+int(n)-1), "--queue-bypass"}
}
