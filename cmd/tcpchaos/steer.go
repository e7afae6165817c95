//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/config"
	"github.com/tcpchaos/tcpchaos/internal/control"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/reload"
	"github.com/tcpchaos/tcpchaos/internal/trail"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// steerHelp is run's help on steering a run.
const steerHelp = "A run listens on a control socket for `tcpchaos ctl` (--control PATH; by default\n" +
	ctlclient.DefaultDir + "/queue-N.sock, N the first queue, or .../NETNS-queue-N.sock with --netns),\n" +
	"mode 0600. On SIGHUP, on `tcpchaos ctl reload` and when the config file changes (also\n" +
	"through a Kubernetes ConfigMap's symlink swap) the config is read again: new rules and\n" +
	"intercept.ports/hosts apply at once, tracked connections and rule limits stay; a bad\n" +
	"config, or one changing what needs a restart, is refused and the old one stays.\n\n"

// steering is the steerable side of a `tcpchaos run`: the control socket,
// the reloads (SIGHUP, a change of the config file, `ctl reload` and `ctl
// set`) and what control requests read. newSteering runs before anything
// is installed, so that a live control socket refuses the run first; the
// run hands it its queues once they run (live.steer).
//
// Every reload runs on the run's own goroutine (the one in the --netns
// namespace, where the interception's iptables commands must run); the
// control server's goroutines hand theirs over.
type steering struct {
	source  configSource
	status  io.Writer // a line per reload and refusal
	ln      *net.UnixListener
	path    string
	hup     chan os.Signal
	trail   *trail.Recorder
	reloads chan reloadRequest
	stopped chan struct{} // closed when serve returns: no more reloads
	watch   *configWatch

	// Set by attach, then read only.
	started        time.Time
	pipes          []*pipeline.Pipeline
	queues         []*nfq.Queue
	in             *nfq.Interception
	full           *nfq.QueueFullCounter // what passed the full queues, for status
	quietInstalled bool                  // the interception was installed with quiet connections
	copyRange      uint32                // the queues' copy range (0: whole packets)

	// quietFloor is, since the run began, the lowest rules.Set.QuietAfter
	// of the sets under which connections could go quiet (nil: none yet):
	// a connection may still be quiet in the kernel from any of them.
	// Only attach and apply (one reload at a time) touch it.
	quietFloor *statetrack.DataBounds

	mu    sync.Mutex // guards what follows; reloads change it
	file  string     // the config file in force
	sum   [sha256.Size]byte
	cfg   config.Config
	set   *rules.Set
	quiet bool // quiet connections' data phase bypasses the queue
	// phases are the quiet phases in force (none unless quiet).
	phases    pipeline.QuietPhases
	loaded    time.Time
	reloaded  uint64
	refused   uint64
	lastErr   string
	lastErrAt time.Time
}

// reloadRequest asks the run's goroutine for a reload of file ("": the
// file in force).
type reloadRequest struct {
	file  string
	reply chan<- reloadResult
}

type reloadResult struct {
	res ctlclient.Reload
	err error
}

// newSteering listens on the control socket path for the run of cfg, read
// from file through source, and starts catching SIGHUP and watching the
// config file (from now on: a change before the run is ready is not
// missed).
func newSteering(path, file string, source configSource, cfg config.Config, status io.Writer, log *slog.Logger) (*steering, error) {
	ln, err := control.Listen(path)
	if err != nil {
		return nil, err
	}
	s := &steering{
		source: source, status: status, ln: ln, path: path,
		hup: make(chan os.Signal, 1), trail: trail.New(0, 0), reloads: make(chan reloadRequest), stopped: make(chan struct{}),
		file: absPath(file), cfg: cfg, loaded: time.Now(),
	}
	s.sum, _ = fileSum(s.file)
	signal.Notify(s.hup, syscall.SIGHUP)
	s.watch = s.newWatcher(log)
	return s, nil
}

// close stops catching SIGHUP and watching, and removes the socket. serve
// calls it; a run that ends before serving calls it itself. It may be
// called again.
func (s *steering) close() {
	signal.Stop(s.hup)
	s.watch.close()
	s.ln.Close()
}

// attach hands over the running run's parts.
func (s *steering) attach(set *rules.Set, pipes []*pipeline.Pipeline, queues []*nfq.Queue, in *nfq.Interception, full *nfq.QueueFullCounter, quiet bool, phases pipeline.QuietPhases, copyRange uint32) {
	s.started = time.Now()
	s.set, s.pipes, s.queues, s.in, s.full = set, pipes, queues, in, full
	s.quiet, s.phases, s.quietInstalled, s.copyRange = quiet, phases, quiet, copyRange
	if quiet {
		after, _ := set.QuietAfter()
		s.quietFloor = &after
	}
}

// serve answers the control socket and carries out reloads until ctx is
// done; then it stops answering and removes the socket.
func (s *steering) serve(ctx context.Context, log *slog.Logger) {
	defer s.close()
	defer close(s.stopped)
	srv := control.Serve(s.ln, s, log)
	defer srv.Close()
	w := s.watch
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.hup:
			s.reload("", "SIGHUP")
		case <-w.changed:
			s.mu.Lock()
			file, was := s.file, s.sum
			s.mu.Unlock()
			if sum, err := fileSum(file); err == nil && sum != was {
				s.reload("", "the config file changed")
			}
		case r := <-s.reloads:
			res, err := s.reload(r.file, "a control request")
			r.reply <- reloadResult{res, err}
		}
		w.follow(s.configFile())
	}
}

func (s *steering) configFile() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.file
}

// reload loads file ("" for the config file in force) and applies it, or
// refuses it: then the config in force stays, and the refusal is counted
// and kept for `ctl status`. Either way a line on the status writer says
// so.
func (s *steering) reload(file, why string) (ctlclient.Reload, error) {
	if file == "" {
		file = s.configFile()
	}
	sum, _ := fileSum(file)
	res, err := s.apply(file)
	s.mu.Lock()
	defer s.mu.Unlock()
	if file == s.file {
		s.sum = sum // the same content does not make another refusal
	}
	if err != nil {
		s.refused++
		s.lastErr, s.lastErrAt = err.Error(), time.Now()
		fmt.Fprintf(s.status, "tcpchaos: reload of %s (%s) refused, the config in force stays: %v\n", file, why, err)
		return ctlclient.Reload{}, err
	}
	s.reloaded++
	s.lastErr = ""
	s.file, s.sum = file, sum
	changed := "nothing changed"
	if len(res.Changed) > 0 {
		changed = fmt.Sprintf("changed %v", res.Changed)
	}
	fmt.Fprintf(s.status, "tcpchaos: reloaded %s (%s): %s; %d rules (%s)\n", file, why, changed, s.set.Len(), queueing(s.set, s.quiet, s.phases, s.copyRange))
	return res, nil
}

// mayQuiet reports whether connections may go quiet under set
// (rules.Set.QuietAfter) without a connection gone quiet under an earlier
// set escaping a rule of set: one can still be quiet in the kernel
// however long ago it went, so set's bounds must be at most those of
// every earlier set under which connections went quiet (a data rule with
// a higher Match.Nth keeps the data phase queued until the run restarts,
// which warning says for the status line).
func (s *steering) mayQuiet(set *rules.Set) (ok bool, warning string) {
	if !s.quietInstalled || !pipeline.QuietData(set, expect.QuietPhases(s.cfg.Expect)) {
		return false, ""
	}
	after, _ := set.QuietAfter()
	if s.quietFloor != nil && !after.AtMost(s.quietFloor) {
		return false, "the data phase stays queued: the new rules may act on later packets of a connection than the rules under which connections went quiet (match.nth), and those may still bypass the queue (restart tcpchaos run to let the data phase bypass it again)"
	}
	return true, ""
}

// apply loads file and puts it in force: a new interception first when
// the ports or hosts changed (new chains before the old ones go), the
// quiet bypass taken out before rules that act on the data phase come in
// (and put back after rules that allow it), the new rule set swapped into
// every pipeline at once, with the old set's limits carried over by name
// (and the trackers told the new server ports).
func (s *steering) apply(file string) (ctlclient.Reload, error) {
	next, err := s.source.load(file)
	if err != nil {
		return ctlclient.Reload{}, err
	}
	s.mu.Lock()
	cur, old, quiet, phases := s.cfg, s.set, s.quiet, s.phases
	s.mu.Unlock()
	change, err := reload.Diff(cur, next)
	if err != nil {
		return ctlclient.Reload{}, err
	}
	set := rules.Compile(next.Rules)
	if set.NeedsPayload() && s.copyRange != 0 {
		return ctlclient.Reload{}, errors.New("rules: a rule duplicates packets that carry payload, which needs whole packets copied from the kernel where this run copies headers only (restart tcpchaos run to apply it)")
	}
	if set.Darkens() && !s.in.Darkens() {
		return ctlclient.Reload{}, errors.New("rules: a blackhole rule needs the kernel rules that keep connections dark, which this run did not install (its rules had no blackhole; restart tcpchaos run to apply it)")
	}
	for _, w := range rules.Warnings(next.Rules) {
		fmt.Fprintf(s.status, "tcpchaos: warning: %s\n", w)
	}
	if change.Intercept {
		// With the old selection left behind, the new one is in force all
		// the same: the reload goes on (the old config could not be put
		// back either).
		if err := s.in.Update(next.Intercept); errors.Is(err, nfq.ErrOldSelectionLeft) {
			fmt.Fprintf(s.status, "tcpchaos: warning: %v\n", err)
		} else if err != nil {
			return ctlclient.Reload{}, err
		}
	}
	newQuiet, warning := quiet, ""
	if change.Rules {
		newQuiet, warning = s.mayQuiet(set)
	} else {
		set = old
	}
	if !newQuiet && s.quietInstalled { // in every family, after a partial failure too
		if err := s.in.SetBypass(false); err != nil {
			if change.Intercept { // back to the selection in force
				err = errors.Join(err, s.in.Update(cur.Intercept))
			}
			return ctlclient.Reload{}, err
		}
	}
	if newQuiet && change.Rules {
		// Connections may go quiet under set from the swap on, even if
		// putting the bypass back fails below.
		after, _ := set.QuietAfter()
		s.quietFloor = &after
	}
	// s.mu is held from the carry to the swap: a rule enabled or disabled
	// meanwhile (SetRuleEnabled) is so in the old set before its flags are
	// carried, or in the new one.
	s.mu.Lock()
	if !change.None() {
		doAll(s.queues, func() {
			if change.Rules {
				set.Carry(old)
			}
			for _, p := range s.pipes {
				if change.Rules {
					p.Switch(set)
					p.SetQuiet(newQuiet)
					phases = p.QuietPhases() // the same for every pipeline
				}
				if change.Intercept { // for the connections picked up mid-stream
					p.SetServerPorts(next.Tracker.ServerPorts)
				}
			}
		})
	}
	s.cfg, s.set = next, set
	s.mu.Unlock()
	if !quiet && newQuiet {
		// The new rules are in force: failing to let quiet connections
		// bypass the queue again only costs speed.
		if err := s.in.SetBypass(true); err != nil {
			newQuiet = false
			warning = fmt.Sprintf("the data phase stays queued: %v", err)
			doAll(s.queues, func() {
				for _, p := range s.pipes {
					p.SetQuiet(false)
				}
			})
		}
	}
	if warning != "" {
		fmt.Fprintf(s.status, "tcpchaos: warning: %s\n", warning)
	}
	if !newQuiet {
		phases = pipeline.QuietPhases{}
	}
	s.mu.Lock()
	s.quiet, s.phases, s.loaded = newQuiet, phases, time.Now()
	res := ctlclient.Reload{Config: file, Loaded: s.loaded, Quiet: newQuiet, QuietHandshake: phases.Handshake, QuietClose: phases.Close, Changed: []string{}}
	s.mu.Unlock()
	if change.Rules {
		res.Changed = append(res.Changed, "rules")
	}
	if change.Intercept {
		res.Changed = append(res.Changed, "intercept")
	}
	return res, nil
}

// doAll calls f while every queue's handler waits (nfq.Queue.Do on each,
// nested in queue order): no packet is decided while f runs.
func doAll(qs []*nfq.Queue, f func()) {
	if len(qs) == 0 {
		f()
		return
	}
	qs[0].Do(func() { doAll(qs[1:], f) })
}

// sink is where the run's events go: to its writer, and to the trails.
func (s *steering) sink(w events.Writer) events.Writer { return events.Tee{w, s.trail} }

// fileSum hashes a file's content (through symlinks).
func fileSum(file string) ([sha256.Size]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// absPath makes a path absolute (unchanged if that fails).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
