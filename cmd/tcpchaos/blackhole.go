//go:build linux

package main

import (
	"fmt"
	"io"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
)

// writeDarkStats prints what blackholes dropped: in the kernel (by its
// rules' counters: per run, not per connection) and in user space, and
// how many healed.
func writeDarkStats(w io.Writer, kernel nfq.DarkStats, kernelErr error, total pipeline.Summary, queues []*nfq.Queue) {
	var healed, failed uint64
	for _, q := range queues {
		s := q.Stats()
		healed, failed = healed+s.Healed, failed+s.HealsFailed
	}
	fmt.Fprintf(w, "blackhole: %d packets dropped in user space; ", total.Stats.Actions[rules.Blackhole])
	if kernelErr != nil {
		fmt.Fprintf(w, "kernel drops unknown (%v); ", kernelErr)
	} else {
		fmt.Fprintf(w, "%d packets (%d bytes) dropped in the kernel; ", kernel.Packets, kernel.Bytes)
	}
	fmt.Fprintf(w, "%d healed (%d could not be)\n", healed, failed)
}
