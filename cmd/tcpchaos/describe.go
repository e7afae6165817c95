package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// describeRule renders a rule on one line, e.g.
// "drop syn nth=1 from=client (probability 1, no limit)".
func describeRule(r rules.Rule) string {
	limit := "no limit"
	if r.Limit > 0 {
		limit = fmt.Sprintf("limit %d", r.Limit)
	}
	return fmt.Sprintf("%s %s (probability %g, %s)", r.Action, describeMatch(r.Match), r.Probability, limit)
}

// describeMatch renders a match, e.g. "syn nth=1 from=client", or
// "every packet".
func describeMatch(m rules.Match) string {
	var b strings.Builder
	if len(m.Packets) == 0 {
		b.WriteString("every packet")
	} else {
		b.WriteString(joinStrings(m.Packets))
	}
	if m.Closer != statetrack.NoCloser {
		fmt.Fprintf(&b, " closer=%s", m.Closer)
	}
	if m.From != nil {
		fmt.Fprintf(&b, " from=%s", *m.From)
	}
	if m.Nth > 0 {
		fmt.Fprintf(&b, " nth=%d", m.Nth)
	}
	if m.Retransmission != nil {
		fmt.Fprintf(&b, " retransmission=%t", *m.Retransmission)
	}
	if len(m.States) > 0 {
		fmt.Fprintf(&b, " state=%s", joinStrings(m.States))
	}
	if len(m.Ports) > 0 {
		fmt.Fprintf(&b, " port=%s", joinStrings(m.Ports))
	}
	if len(m.Src) > 0 {
		fmt.Fprintf(&b, " src=%s", joinStrings(m.Src))
	}
	if len(m.Dst) > 0 {
		fmt.Fprintf(&b, " dst=%s", joinStrings(m.Dst))
	}
	if m.Idle > 0 {
		fmt.Fprintf(&b, " idle=%s", m.Idle)
	}
	return b.String()
}

func joinStrings[T any](xs []T) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}

// writeSummary prints what a run or a replay saw and did.
func writeSummary(w io.Writer, s pipeline.Summary) {
	t := s.Tracker
	fmt.Fprintf(w, "connections: %d seen, %d tracked at the end, %d midstream, %d new incarnations, %d time-wait expired, %d idle expired, %d evicted; %d packets of untracked tuples\n",
		t.Connections, s.Tracked, t.Midstream, t.NewIncarnations, t.TimeWaitExpired, t.IdleExpired, t.Evicted, t.Untracked)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "packets by kind:\t")
	for _, k := range statetrack.Kinds() {
		if n := s.Stats.Packets[k]; n > 0 {
			fmt.Fprintf(tw, "  %s\t%d\n", k, n)
		}
	}
	fmt.Fprintln(tw, "rules:\thits")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "  %s\t%d\n", r.Name, r.Hits)
	}
	actions := make([]string, rules.NumActionTypes)
	for _, a := range rules.ActionTypes() {
		actions[a] = fmt.Sprintf("%s %d", a, s.Stats.Actions[a])
		if a == rules.Reset {
			actions[a] += fmt.Sprintf(" (injected RSTs: %d)", s.Stats.Injected)
		}
	}
	fmt.Fprintf(tw, "actions:\t%s\n", strings.Join(actions, ", "))
	tw.Flush()
}
