package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pcapPacket is one packet of a pcapng file as tshark reads it.
type pcapPacket struct {
	time             float64 // seconds since the epoch
	srcPort, dstPort int
	flags            uint64 // TCP flags
	seq              uint64
	capLen, origLen  int
	comment          string
}

// readPcapng reads a pcapng file with tshark, an independent reader that
// shows the packet comments as Wireshark does.
func readPcapng(t *testing.T, path string) []pcapPacket {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", "-r", path, "-T", "fields", "-E", "separator=/t",
		"-e", "frame.time_epoch", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.flags", "-e", "tcp.seq_raw",
		"-e", "frame.cap_len", "-e", "frame.len", "-e", "frame.comment")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, stderr.Bytes())
	}
	var pkts []pcapPacket
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 8 {
			t.Fatalf("tshark line %q: %d fields, want 8", line, len(f))
		}
		var p pcapPacket
		var errs [7]error
		p.time, errs[0] = strconv.ParseFloat(f[0], 64)
		p.srcPort, errs[1] = strconv.Atoi(f[1])
		p.dstPort, errs[2] = strconv.Atoi(f[2])
		p.flags, errs[3] = strconv.ParseUint(strings.TrimPrefix(f[3], "0x"), 16, 16)
		p.seq, errs[4] = strconv.ParseUint(f[4], 10, 32)
		p.capLen, errs[5] = strconv.Atoi(f[5])
		p.origLen, errs[6] = strconv.Atoi(f[6])
		for _, err := range errs {
			if err != nil {
				t.Fatalf("tshark line %q: %v", line, err)
			}
		}
		p.comment = f[7]
		pkts = append(pkts, p)
	}
	return pkts
}

// clientPort is the client's port of a packet to or from port.
func (p pcapPacket) clientPort() int {
	if p.dstPort == port {
		return p.srcPort
	}
	return p.dstPort
}

// TestCommandPcap: two curl requests under a lost first SYN limited to one
// connection. --pcap records the connection the rule touched, every packet
// tcpchaos handled (as many as its packet events), from its first packet,
// the dropped SYN with the comment "dropped by lose-first-syn", to its
// last, the retransmitted SYN about 1 s later without a comment, cut at
// the header copy range; the second connection, which no rule touched, is
// left out. --pcap-all records both.
func TestCommandPcap(t *testing.T) {
	t.Parallel()
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all=%t", all), func(t *testing.T) {
			t.Parallel()
			r := newCommandRun(t, filepath.Join("testdata", "pcap-lost-first-syn-once.yaml"))
			pcap := filepath.Join(r.dir, "run.pcapng")
			extra := []string{"--pcap", pcap, "--linger", "500ms"}
			if all {
				extra = append(extra, "--pcap-all")
			}
			curl := strings.Join(r.curl("3")[4:], " ")
			code, stdout, _ := r.run(extra, "ip", "netns", "exec", r.tp.Client.Name, "sh", "-c", curl+" && "+curl)
			if code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}

			// The oracle of what tcpchaos handled: its packet events, by
			// the client's port.
			handled := map[int]int{}
			touched := 0
			for _, e := range readEvents(t, filepath.Join(r.dir, "events.jsonl")) {
				if e.Kind != 0 && !e.Injected {
					handled[int(e.Client.Port())]++
				}
				if e.Rule == "lose-first-syn" {
					touched = int(e.Client.Port())
				}
			}
			if len(handled) != 2 || touched == 0 {
				t.Fatalf("events show connections %v, the rule touched %d: want 2 connections, one touched", handled, touched)
			}

			pkts := readPcapng(t, pcap)
			got := map[int]int{}
			var conn []pcapPacket // the touched connection's
			for _, p := range pkts {
				got[p.clientPort()]++
				if p.clientPort() == touched {
					conn = append(conn, p)
				}
				if p.capLen > 256 || p.capLen > p.origLen {
					t.Errorf("packet %+v: captured %d of %d bytes, want at most the copy range of 256", p, p.capLen, p.origLen)
				}
			}
			want := map[int]int{touched: handled[touched]}
			if all {
				want = handled
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("pcapng holds packets by client port %v, want %v (all: %t)", got, want, all)
			}
			const syn = 0x002
			if len(conn) < 2 || conn[0].flags != syn || conn[1].flags != syn || conn[0].seq != conn[1].seq {
				t.Fatalf("the touched connection does not start with the SYN and its retransmission: %+v", conn)
			}
			if conn[0].comment != "dropped by lose-first-syn" {
				t.Errorf("dropped SYN's comment %q, want %q", conn[0].comment, "dropped by lose-first-syn")
			}
			if gap := conn[1].time - conn[0].time; gap < 0.8 || gap > 3 {
				t.Errorf("retransmitted SYN %.3f s after the first, want about 1 s", gap)
			}
			comments := slices.IndexFunc(pkts, func(p pcapPacket) bool { return p.comment != "" && p != conn[0] })
			if comments >= 0 {
				t.Errorf("packet %+v has a comment: only the dropped SYN should", pkts[comments])
			}
			if last := conn[len(conn)-1]; last.flags&0x001 != 0 || last.flags&0x010 == 0 {
				t.Errorf("the connection's last packet %+v is not the ACK of a close", last)
			}
			summary := fmt.Sprintf("pcap: %d packets written to %s", len(pkts), pcap)
			if !strings.Contains(stdout, summary) {
				t.Errorf("summary does not say %q:\n%s", summary, stdout)
			}
		})
	}
}

// TestCommandPcapHeldAndCopied: curl under a held SYN-ACK and a copy of
// the SYN 1 s later. The SYN-ACK is written as it arrived, with the hold
// drawn in its comment, and the client's ACK arrives only after that hold;
// the copy is written when it was sent, 1 s after the SYN, with its own
// comment.
func TestCommandPcapHeldAndCopied(t *testing.T) {
	t.Parallel()
	r := newCommandRun(t, filepath.Join("testdata", "pcap-held-and-copied.yaml"))
	pcap := filepath.Join(r.dir, "run.pcapng")
	if code, _, _ := r.run([]string{"--pcap", pcap, "--linger", "2s"}, r.curl("3")...); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	pkts := readPcapng(t, pcap)
	const syn, synAck = 0x002, 0x012
	if len(pkts) < 4 || pkts[0].flags != syn || pkts[1].flags != synAck || pkts[2].srcPort != pkts[0].srcPort {
		t.Fatalf("the capture does not start with SYN, SYN-ACK, the client's ACK: %+v", pkts)
	}
	if want := "duplicated by stale-syn (1 copy after 1s)"; pkts[0].comment != want {
		t.Errorf("SYN's comment %q, want %q", pkts[0].comment, want)
	}
	var held float64
	if _, err := fmt.Sscanf(pkts[1].comment, "held %fms by slow-syn-ack", &held); err != nil || held < 280 || held > 320 {
		t.Errorf("SYN-ACK's comment %q, want \"held 280ms..320ms by slow-syn-ack\"", pkts[1].comment)
	}
	if gap := (pkts[2].time - pkts[1].time) * 1000; gap < held-1 {
		t.Errorf("the client's ACK arrived %.1f ms after the SYN-ACK, before its hold of %.1f ms ended", gap, held)
	}
	copies := slices.DeleteFunc(slices.Clone(pkts), func(p pcapPacket) bool { return p.comment != "copy 1 of 1 by stale-syn" })
	if len(copies) != 1 || copies[0].flags != syn || copies[0].seq != pkts[0].seq {
		t.Fatalf("copies of the SYN written: %+v, want one", copies)
	}
	if gap := copies[0].time - pkts[0].time; gap < 0.99 || gap > 2.5 {
		t.Errorf("copy written %.3f s after the SYN, want 1 s", gap)
	}
}
