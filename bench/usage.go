package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// What a workload costs the program in the router, measured from /proc
// around the workload: the packets its queues were handed (queue
// crossings) and its CPU time. Unlike wall-clock ratios these hardly move
// when other programs share the machine.

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// usage is a snapshot of the router program's counters.
type usage struct {
	// queued is the kernel's id_sequence per queue number: how many
	// packets each queue was handed since it was bound.
	queued map[uint16]uint32
	// cpuTicks is the program's utime + stime, all threads, in 1/userHZ s;
	// -1 when there is no program.
	cpuTicks int64
}

// cost is what a workload cost, the difference of two snapshots.
type cost struct {
	// Queued is how many packets were queued (crossed to user space);
	// -1 when no queue was bound.
	Queued int64
	// CPU is the program's CPU time in seconds; NaN without a program.
	CPU float64
	// Conns is how many connections the workload made.
	Conns int64
}

// costBetween returns after − before for a workload of conns connections.
// Queues bound in only one of the snapshots are left out; a queue's
// counter wraps at 2^32.
func costBetween(before, after usage, conns int64) cost {
	c := cost{Queued: -1, CPU: math.NaN(), Conns: conns}
	for q, a := range after.queued {
		if b, ok := before.queued[q]; ok {
			c.Queued = max(c.Queued, 0) + int64(a-b)
		}
	}
	if before.cpuTicks >= 0 && after.cpuTicks >= 0 {
		c.CPU = float64(after.cpuTicks-before.cpuTicks) / userHZ
	}
	return c
}

// crossingsPerConn is packets queued per connection (NaN when not known).
func (c cost) crossingsPerConn() float64 {
	if c.Queued < 0 || c.Conns <= 0 {
		return math.NaN()
	}
	return float64(c.Queued) / float64(c.Conns)
}

// cpuPerCrossing is the program's CPU time per packet queued, in µs (NaN
// when not known or nothing was queued).
func (c cost) cpuPerCrossing() float64 {
	if c.Queued <= 0 {
		return math.NaN()
	}
	return c.CPU * 1e6 / float64(c.Queued)
}

// cpuPerConn is the program's CPU time per connection, in µs.
func (c cost) cpuPerConn() float64 {
	if c.Conns <= 0 {
		return math.NaN()
	}
	return c.CPU * 1e6 / float64(c.Conns)
}

// snapshot reads the queues of ns and the CPU time of pid (0: none).
func snapshot(ns *netlab.NS, pid int) (usage, error) {
	u := usage{cpuTicks: -1}
	var data []byte
	err := ns.Do(func() (err error) {
		data, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		return u, fmt.Errorf("%s: queue counters: %w", ns.Name, err)
	}
	u.queued = parseQueueSequences(string(data))
	if pid > 0 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return u, fmt.Errorf("cpu time: %w", err)
		}
		if u.cpuTicks, err = parseCPUTicks(string(b)); err != nil {
			return u, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return u, nil
}

// parseQueueSequences returns id_sequence (the 8th field) per queue number
// (the 1st) of /proc/net/netfilter/nfnetlink_queue; lines it cannot read
// are skipped.
func parseQueueSequences(list string) map[uint16]uint32 {
	m := make(map[uint16]uint32)
	for line := range strings.Lines(list) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		q, err1 := strconv.ParseUint(f[0], 10, 16)
		seq, err2 := strconv.ParseUint(f[7], 10, 32)
		if err1 == nil && err2 == nil {
			m[uint16(q)] = uint32(seq)
		}
	}
	return m
}

// parseCPUTicks returns utime + stime of a /proc/PID/stat line: fields 14
// and 15, counted after the command name in parentheses (which may hold
// spaces and parentheses itself).
func parseCPUTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var sum int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime %q: %w", s, err)
		}
		sum += n
	}
	return sum, nil
}

// memory is a process's resident set size now and at its peak, in bytes
// (VmRSS and VmHWM of /proc/PID/status).
type memory struct {
	RSS, Peak int64
}

// readMemory reads the memory of pid.
func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("memory: %w", err)
	}
	defer f.Close()
	return parseMemory(bufio.NewScanner(f))
}

// parseMemory reads VmRSS and VmHWM ("VmRSS:  1234 kB") from status lines.
func parseMemory(sc *bufio.Scanner) (memory, error) {
	var m memory
	found := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		}
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", k, err)
		}
		*dst = kb << 10
		found++
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS or VmHWM missing")
	}
	return m, nil
}
