//go:build linux

// Package metrics exposes a live run's counters as Prometheus metrics. The
// collector reads them at scrape time, from snapshots taken serialized
// with each queue's packets (nfq.Queue.Do): nothing is added to the packet
// path but the verdict histogram the queue keeps itself
// (nfq.Options.TimeVerdicts).
package metrics

import (
	"errors"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Queue is one queue's state at a scrape.
type Queue struct {
	// Number is the NFQUEUE number.
	Number uint16
	// Summary is the queue's pipeline's counters.
	Summary pipeline.Summary
	// States counts its tracked connections by their endpoints' states.
	States statetrack.StatePairs
	// Stats is the queue's counters and the kernel's view of it.
	Stats nfq.Stats
}

// Reloads counts config reloads by result.
type Reloads struct {
	// OK counts reloads that replaced the rules; Refused those refused
	// (the config did not validate), which left the rules as they were.
	OK, Refused uint64
}

// Source is what the collector reads at each scrape.
type Source struct {
	// Queues returns a snapshot of every queue.
	Queues func() []Queue
	// Reloads returns the reload counts (nil: none, both 0).
	Reloads func() Reloads
	// QueueFull reads what passed the queues unseen because they were
	// full (nil: not exposed; an error leaves it out of the scrape). A
	// scrape waits for it at most queueFullWait (see Bounded).
	QueueFull func() (nfq.QueueFull, error)
	// Version is tcpchaos's version, for tcpchaos_build_info.
	Version string
}

// queueFullWait bounds a scrape's wait for Source.QueueFull, whose
// iptables commands may wait up to 10 s each for the xtables lock that
// another program holds: well within Prometheus's default scrape timeout
// (10 s).
const queueFullWait = 2 * time.Second

// Bounded returns read waiting at most d for each call: a read that takes
// longer goes on in the background and the call returns the last result
// read (an error before the first), and no call starts another read while
// one is in flight. For counters, a late figure is a lower one, never a
// wrong one.
func Bounded[T any](read func() (T, error), d time.Duration) func() (T, error) {
	var (
		mu       sync.Mutex
		last     T
		lastErr  = errors.New("not read yet")
		inFlight chan struct{} // closed when the read in flight ends; nil: none
	)
	return func() (T, error) {
		mu.Lock()
		done := inFlight
		if done == nil {
			done = make(chan struct{})
			inFlight = done
			go func() {
				v, err := read()
				mu.Lock()
				defer mu.Unlock()
				last, lastErr, inFlight = v, err, nil
				close(done)
			}()
		}
		mu.Unlock()
		select {
		case <-done:
		case <-time.After(d):
		}
		mu.Lock()
		defer mu.Unlock()
		return last, lastErr
	}
}

// stateSlots is how many slots of a connection table one call of
// CountStates reads while the queue's packets wait: about 0.1 ms
// (statetrack's BenchmarkCountStatesMillion).
const stateSlots = 1 << 12

// Snapshot returns the state of each queue and its pipeline (queues and
// pipes in the same order); each pipeline is read inside its queue's Do.
// With states, the tracked connections are counted by state pair too, the
// connection table stateSlots slots at a time, the queue's packets handled
// in between.
func Snapshot(queues []*nfq.Queue, pipes []*pipeline.Pipeline, states bool) []Queue {
	qs := make([]Queue, len(queues))
	for i, q := range queues {
		s := &qs[i]
		q.Do(func() { s.Summary = pipes[i].Summary() })
		for from, more := 0, states; more; {
			q.Do(func() { from, more = pipes[i].CountStates(from, stateSlots, &s.States) })
		}
		s.Number, s.Stats = q.Number(), q.Stats()
	}
	return qs
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("tcpchaos_"+name, help, labels, nil)
}

var (
	packetsDesc  = desc("packets_total", "Packets seen by the pipelines, by kind and by the action taken.", "kind", "action")
	ruleHitsDesc = desc("rule_hits_total", "Packets each rule acted on, with the rule's action.", "rule", "action")
	connsDesc    = desc("connections", "Tracked connections by the states of their client and server endpoints (pairs with none are not exposed).", "client_state", "server_state")
	trackedDesc  = desc("tracked_connections", "Connections the trackers hold.")
	connsTotal   = desc("connections_total", "Tracked connections by outcome: created by a first SYN (new), picked up after their handshake (midstream), a SYN reusing a tuple in TIME_WAIT or CLOSED (new_incarnation); removed after TIME_WAIT or the idle timeout (expired), or to make room (evicted).", "outcome")
	untracked    = desc("untracked_packets_total", "Packets of unknown tuples that created no connection (a lone RST, a segment without SYN, RST and ACK).")
	heldDesc     = desc("held_packets", "Packets held by delay actions, awaiting release.")
	verdictDesc  = desc("verdict_seconds", "Time from reading a packet from the queue to the return of the write that carried its verdict; verdicts given on reading only (a held packet's release is not timed).")
	reloadsDesc  = desc("config_reloads_total", "Config reloads by result: ok (the rules were replaced), refused (the new config did not validate; the rules stayed).", "result")
	buildDesc    = desc("build_info", "tcpchaos's version and the Go version it was built with; always 1.", "version", "goversion")

	receivedDesc  = desc("queue_received_total", "Packets read from the queue.", "queue")
	copiesDesc    = desc("queue_copies_total", "Copies of duplicated packets by result: sent, failed (the raw socket refused), cancelled (not due when the run stopped), skipped (the packet was copied from the kernel in part).", "queue", "result")
	resetsDesc    = desc("queue_resets_total", "RSTs of reset actions by result: sent, failed (the raw socket refused).", "queue", "result")
	errorsDesc    = desc("queue_errors_total", "Packets or messages the queue failed on, by error: decode (not IPv4/IPv6 TCP or malformed; accepted), handler_panic (accepted), verdict (a verdict the kernel refused or that could not be written), read (a failed or malformed read).", "queue", "error")
	queuedDesc    = desc("queue_kernel_queued_total", "Packets the kernel queued since the queue was bound (id_sequence of /proc/net/netfilter/nfnetlink_queue, counted on past its 2^32 wrap).", "queue")
	unseenDesc    = desc("queue_unseen_total", "Packets the kernel queued that tcpchaos never read: with fail-open they passed unseen (id_sequence minus packets received).", "queue")
	fullDesc      = desc("queue_full_unseen_total", "Packets that found their queue full and passed unseen, without an id (fail-open; the kernel counts them nowhere): the NFQUEUE rules' packet counters, both families, minus the queues' id_sequence.")
	kDroppedDesc  = desc("queue_kernel_dropped_total", "Packets the kernel dropped because the queue was full (queue_dropped of /proc/net/netfilter/nfnetlink_queue; none with fail-open).", "queue")
	uDroppedDesc  = desc("queue_user_dropped_total", "Packets the kernel failed to hand to tcpchaos's socket (user_dropped of /proc/net/netfilter/nfnetlink_queue).", "queue")
	waitingDesc   = desc("queue_waiting_packets", "Packets in the kernel's queue awaiting a verdict, held ones included (queue_total of /proc/net/netfilter/nfnetlink_queue).", "queue")
	copyRangeDesc = desc("queue_copy_range_bytes", "How many bytes of each packet the kernel copies to tcpchaos (copy_range of /proc/net/netfilter/nfnetlink_queue; 0: whole packets).", "queue")
)

// collector is a prometheus.Collector over a Source.
type collector struct{ src Source }

// NewCollector returns a collector of the metrics of src, read at each
// scrape.
func NewCollector(src Source) prometheus.Collector {
	if src.QueueFull != nil {
		src.QueueFull = Bounded(src.QueueFull, queueFullWait)
	}
	return collector{src}
}

// Describe sends every metric's description.
func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		packetsDesc, ruleHitsDesc, connsDesc, trackedDesc, connsTotal, untracked, heldDesc, verdictDesc,
		copiesDesc, resetsDesc, reloadsDesc, buildDesc,
		receivedDesc, errorsDesc, queuedDesc, unseenDesc, fullDesc, kDroppedDesc, uDroppedDesc, waitingDesc, copyRangeDesc,
	} {
		ch <- d
	}
}

// Collect reads the source and sends the metrics: the pipelines' figures,
// the held packets and the verdict histogram added up over the queues, the
// queues' own counters and the kernel's per queue, and what passed the
// full queues unseen.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	var (
		total  pipeline.Summary
		states statetrack.StatePairs
		held   int64
		lat    nfq.Latency
	)
	for _, q := range c.src.Queues() {
		total.Add(q.Summary)
		states.Add(&q.States)
		held += q.Stats.Held
		lat.Add(&q.Stats.VerdictLatency)
		c.collectQueue(q, counter, gauge)
	}

	for _, k := range statetrack.Kinds() {
		for _, a := range rules.ActionTypes() {
			counter(packetsDesc, total.Stats.KindActions[k][a], k.String(), a.String())
		}
	}
	for _, r := range total.Rules {
		counter(ruleHitsDesc, r.Hits, r.Name, r.Action.String())
	}
	for cs := range states {
		for ss, n := range states[cs] {
			if n > 0 {
				gauge(connsDesc, float64(n), statetrack.State(cs).String(), statetrack.State(ss).String())
			}
		}
	}
	gauge(trackedDesc, float64(total.Tracked))
	t := total.Tracker
	counter(connsTotal, t.Connections-t.Midstream-t.NewIncarnations, "new")
	counter(connsTotal, t.Midstream, "midstream")
	counter(connsTotal, t.NewIncarnations, "new_incarnation")
	counter(connsTotal, t.TimeWaitExpired+t.IdleExpired, "expired")
	counter(connsTotal, t.Evicted, "evicted")
	counter(untracked, t.Untracked)
	gauge(heldDesc, float64(held))
	ch <- verdictHistogram(&lat)
	var r Reloads
	if c.src.Reloads != nil {
		r = c.src.Reloads()
	}
	if c.src.QueueFull != nil {
		if qf, err := c.src.QueueFull(); err == nil {
			counter(fullDesc, qf.Unseen)
		}
	}
	counter(reloadsDesc, r.OK, "ok")
	counter(reloadsDesc, r.Refused, "refused")
	gauge(buildDesc, 1, c.src.Version, runtime.Version())
}

// collectQueue sends one queue's own counters and the kernel's.
func (collector) collectQueue(q Queue, counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	n, s := strconv.Itoa(int(q.Number)), &q.Stats
	counter(receivedDesc, s.Received, n)
	counter(errorsDesc, s.DecodeFailures, n, "decode")
	counter(errorsDesc, s.HandlerPanics, n, "handler_panic")
	counter(errorsDesc, s.VerdictErrors, n, "verdict")
	counter(errorsDesc, s.ReadErrors, n, "read")
	counter(copiesDesc, s.CopiesSent, n, "sent")
	counter(copiesDesc, s.CopiesFailed, n, "failed")
	counter(copiesDesc, s.CopiesCancelled, n, "cancelled")
	counter(copiesDesc, s.CopiesSkipped, n, "skipped")
	counter(resetsDesc, s.ResetsSent, n, "sent")
	counter(resetsDesc, s.ResetsFailed, n, "failed")
	if s.KernelErr != nil {
		return
	}
	k := &s.Kernel
	counter(queuedDesc, s.Queued(), n)
	counter(unseenDesc, s.Unreceived(), n)
	counter(kDroppedDesc, uint64(k.QueueDropped), n)
	counter(uDroppedDesc, uint64(k.UserDropped), n)
	gauge(waitingDesc, float64(k.Waiting), n)
	gauge(copyRangeDesc, float64(k.CopyRange), n)
}

// verdictHistogram turns the queues' latency histogram into
// tcpchaos_verdict_seconds: cumulative buckets at nfq's bounds.
func verdictHistogram(l *nfq.Latency) prometheus.Metric {
	buckets := make(map[float64]uint64, nfq.LatencyBuckets-1)
	var cum uint64
	for i := range nfq.LatencyBuckets - 1 {
		cum += l.Counts[i]
		buckets[nfq.LatencyBound(i).Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(verdictDesc, l.Count(), l.Sum.Seconds(), buckets)
}
