// Command kernelcap makes the real-kernel captures in
// statetrack/testdata/kernel-captures that exercise RFC 5961's challenge
// ACK paths, a stale SYN after a close, FINs crossing beyond the router
// and keepalive probing, and prints their MANIFEST.tsv rows with the
// kernels' own ss states at checkpoints. It needs root (network
// namespaces, raw sockets, iptables, tc):
//
//	go run ./internal/kernelcap -out statetrack/testdata/kernel-captures
//
// The RFC 5961 and stale-SYN captures pit a scripted peer (198.18.0.2, raw
// sockets; its own kernel is kept out of the way by an iptables rule)
// against a Linux listener (198.18.0.1:8080) in a namespace of its own,
// and capture on the peer's interface. The crossing-FIN capture runs two
// real kernels, an HTTP/1.0-style server that closes right after its
// response and a client that closes as soon as it has read it, through a
// router whose link to the client is slowed by a token bucket (no netem on
// this kernel), and captures on the router's server side: the server's FIN
// passes there before the client's, which was sent before the server's
// arrived.
//
// Every capture is LINKTYPE_RAW with the TCP checksums recomputed (the
// capture sees kernel packets before checksum offload). Sequence numbers
// and ports of the kernels vary from run to run; states do not.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// A job makes one capture file and its manifest row.
type job struct {
	file, script, side, description string
	// run makes the capture in the lab and returns its packets and
	// checkpoints.
	run func(l *netlab.Lab) (*recording, error)
}

var jobs = []job{
	{
		file:        "rfc5961-rst-in-window.pcap",
		script:      "internal/kernelcap: rstInWindow",
		side:        kernelServer,
		description: "RFC 5961 §3: after the handshake and 10 B, an RST far outside the window is dropped silently; one in the window but not at rcv_nxt draws a challenge ACK and changes nothing; the RST at rcv_nxt closes",
		run:         rstInWindow,
	},
	{
		file:        "rfc5961-syn-established.pcap",
		script:      "internal/kernelcap: synEstablished",
		side:        kernelServer,
		description: "RFC 5961 §4: a SYN with a new sequence number in the window of an established connection draws a challenge ACK and changes nothing; the peer's RST at the challenge's ack closes; the SYN retransmission opens a new connection",
		run:         synEstablished,
	},
	{
		file:        "rfc5961-syn-time-wait.pcap",
		script:      "internal/kernelcap: synTimeWait",
		side:        kernelServer,
		description: "server-first close leaves the kernel in TIME_WAIT; a new SYN from the same port below rcv_nxt (no timestamps) draws a challenge ACK; the peer answers it with an RST at its ack, which ends the TIME_WAIT; the SYN retransmission opens a new connection (cf. google/gvisor#7619)",
		run:         func(l *netlab.Lab) (*recording, error) { return synTimeWait(l, false) },
	},
	{
		file:        "syn-time-wait-accept.pcap",
		script:      "internal/kernelcap: synTimeWait(accept)",
		side:        kernelServer,
		description: "server-first close leaves the kernel in TIME_WAIT; a new SYN from the same port beyond rcv_nxt is taken at once (SYN-ACK): the new incarnation",
		run:         func(l *netlab.Lab) (*recording, error) { return synTimeWait(l, true) },
	},
	{
		file:        "stale-syn-after-close.pcap",
		script:      "internal/kernelcap: staleSYN",
		side:        kernelServer,
		description: "after a client-first close (the kernel has no socket left) the client's old SYN arrives again and is taken for a new connection (SYN-RECV); an ACK of the old connection, as the client's TIME_WAIT answers the SYN-ACK, draws an RST and changes nothing; the peer's RST at the SYN-ACK's ack ends the SYN-RECV",
		run:         staleSYN,
	},
	{
		file:        "crossing-fins.pcap",
		script:      "internal/kernelcap: crossingFINs",
		side:        "both ends are real kernels: client 198.18.1.2 (reads the response, then closes), server 198.19.2.2:8080 (HTTP/1.0-style: response, then close); captured on the router's server-side interface, the router's link to the client slowed by tbf",
		description: "the server's FIN passes the capture point first, but the client's FIN, sent before the server's reached it, does not acknowledge it: a simultaneous close, both ends through CLOSING to TIME_WAIT",
		run:         crossingFINs,
	},
	{
		file:        "keepalive.pcap",
		script:      "internal/kernelcap: keepaliveProbes",
		side:        keepaliveSide,
		description: "SO_KEEPALIVE (TCP_KEEPIDLE 1 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3) after one request and its answer: each probe is a pure ACK one below the client's snd_nxt, no payload; the server answers each with a pure ACK of snd_nxt; the client then closes",
		run:         func(l *netlab.Lab) (*recording, error) { return keepaliveProbes(l, false) },
	},
	{
		file:        "keepalive-answers-lost.pcap",
		script:      "internal/kernelcap: keepaliveProbes(lost)",
		side:        keepaliveSide,
		description: "as keepalive.pcap, but the router drops everything from the server behind the capture point after the exchange: the server's answers are seen here and never reach the client, which sends TCP_KEEPCNT probes TCP_KEEPINTVL apart and gives up with an RST (ETIMEDOUT) that closes the server",
		run:         func(l *netlab.Lab) (*recording, error) { return keepaliveProbes(l, true) },
	},
}

const keepaliveSide = "both ends are real kernels: client 198.18.1.2 (SO_KEEPALIVE), server 198.19.2.2:8080 (echo); captured on the router's server-side interface"

const kernelServer = "local kernel 198.18.0.1:8080 is the server (listen/accept); 198.18.0.2 is the scripted raw-socket peer (client)"

func main() {
	out := flag.String("out", "", "directory to write the captures to (required)")
	only := flag.String("only", "", "make only the capture of this file name")
	flag.Parse()
	if err := run(*out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "kernelcap:", err)
		os.Exit(1)
	}
}

func run(out, only string) error {
	if out == "" {
		return errors.New("-out is required")
	}
	if err := netlab.Check("ip", "iptables", "tc", "ss"); err != nil {
		return err
	}
	var rows []string
	for _, c := range jobs {
		if only != "" && only != c.file {
			continue
		}
		row, err := make1(out, c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.file, err)
		}
		rows = append(rows, row)
	}
	fmt.Println(strings.Join(rows, "\n"))
	return nil
}

// make1 makes one capture in a lab of its own and returns its manifest row.
func make1(out string, c job) (row string, err error) {
	l := netlab.New(fmt.Sprintf("kc%d", os.Getpid()))
	defer func() {
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}()
	rec, err := c.run(l)
	if err != nil {
		return "", err
	}
	if err := rec.write(filepath.Join(out, c.file)); err != nil {
		return "", err
	}
	n := rec.count()
	return strings.Join([]string{c.file, c.script, c.side, c.description,
		fmt.Sprint(n), fmt.Sprint(n), strings.Join(rec.checks, "; "), "-"}, "\t"), nil
}
