package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsURL is the line `run --metrics` prints before it intercepts.
var metricsURL = regexp.MustCompile(`tcpchaos: metrics at (http://\S+)`)

// metricsAt returns the URL at which tcpchaos (started with --metrics)
// serves its metrics, as its status line says.
func (c *tcpchaos) metricsAt(t *testing.T) string {
	t.Helper()
	m := metricsURL.FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in\n%s", c.stderr.String())
	}
	return m[1]
}

// newMetricsScenario is newScenarioWith a config file holding config and
// --metrics; it returns the metrics URL too.
func newMetricsScenario(t *testing.T, config string) (*scenario, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newScenarioWith(t, path, false, "--metrics", "127.0.0.1:0")
	return s, s.chaos.metricsAt(t)
}

// scrape reads the metrics at url (from the test's own namespace: the one
// tcpchaos was started in); it returns them parsed, and tcpchaos's own
// series as text.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	c := http.Client{Timeout: ioTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", url, err)
	}
	var own strings.Builder
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "tcpchaos_") {
			own.WriteString(line)
		}
	}
	return mfs, own.String()
}

// value returns the value of the series of family name whose labels are
// labels ("k=v" pairs), or -1 when there is none.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsCountTheTraffic: `run --metrics 127.0.0.1:0` with
// configs/lost-first-syn.yaml, N connections from the client, each one
// request and a close by the client. A scrape from the namespace tcpchaos
// was started in (not the router's) shows the rule's N drops (each
// connection's first SYN), the SYNs the wire carried (2N: each one
// retransmitted) less those, N of each other handshake and close packet
// that is queued (at most N handshake-acks: the quiet handshake lets the
// third ACK bypass the queue), N new connections all in TIME_WAIT/CLOSED, and a verdict timed for each
// packet read.
func TestMetricsCountTheTraffic(t *testing.T) {
	t.Parallel()
	const n = 3
	s := newScenarioWith(t, configPath("lost-first-syn.yaml"), false, "--metrics", "127.0.0.1:0")
	m := s.chaos.metricsAt(t)
	s.listen(pingPong(0))
	for range n {
		c, _ := s.dial()
		request(t, c)
		c.Close()
	}
	// The client closes first: each of its sockets ends in TIME_WAIT, the
	// server's CLOSED once the final ACK crossed.
	deadline := time.Now().Add(10 * time.Second)
	mfs, text := scrape(t, m)
	for value(mfs, "tcpchaos_connections", "client_state=TIME_WAIT", "server_state=CLOSED") != n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		mfs, text = scrape(t, m)
	}
	t.Logf("scraped:\n%s", text)
	atClient, _, _ := s.finish()
	clientSyns := len(pick(atClient, from(s.client), isSyn))
	if clientSyns != 2*n {
		t.Errorf("the wire carried %d client SYNs on the client side, want %d (each retransmitted once)", clientSyns, 2*n)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpchaos_rule_hits_total", []string{"rule=lose-first-syn", "action=drop"}, n},
		{"tcpchaos_packets_total", []string{"kind=syn", "action=drop"}, n},
		{"tcpchaos_packets_total", []string{"kind=syn", "action=accept"}, float64(clientSyns - n)},
		{"tcpchaos_packets_total", []string{"kind=syn-ack", "action=accept"}, n},
		{"tcpchaos_packets_total", []string{"kind=fin", "action=accept"}, 2 * n},
		{"tcpchaos_packets_total", []string{"kind=final-ack", "action=accept"}, n},
		{"tcpchaos_packets_total", []string{"kind=fin", "action=drop"}, 0},
		{"tcpchaos_connections_total", []string{"outcome=new"}, n},
		{"tcpchaos_connections_total", []string{"outcome=midstream"}, 0},
		{"tcpchaos_connections", []string{"client_state=TIME_WAIT", "server_state=CLOSED"}, n},
		{"tcpchaos_tracked_connections", nil, n},
		{"tcpchaos_held_packets", nil, 0},
		{"tcpchaos_queue_unseen_total", nil, 0},
		{"tcpchaos_queue_kernel_dropped_total", nil, 0},
		{"tcpchaos_config_reloads_total", []string{"result=ok"}, 0},
		{"tcpchaos_build_info", nil, 1},
	} {
		if got := value(mfs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The config has no rule and no expectation on the third ACK: after
	// the SYN-ACK's verdict it bypasses the queue (the quiet handshake),
	// unless that verdict was written while more packets waited in the
	// queue (then the connection did not go quiet yet).
	if got := value(mfs, "tcpchaos_packets_total", "kind=handshake-ack", "action=accept"); got > n {
		t.Errorf("%v handshake-acks queued, want at most %d (quiet handshake)", got, n)
	}
	var packets float64
	for _, m := range mfs["tcpchaos_packets_total"].GetMetric() {
		packets += m.GetCounter().GetValue()
	}
	received := value(mfs, "tcpchaos_queue_received_total")
	// At least the two SYNs, the SYN-ACK, both FINs and the final ACK of
	// each connection (the third ACK and, under a quiet close, the ACK of
	// the first FIN may bypass the queue).
	if received != packets || value(mfs, "tcpchaos_verdict_seconds") != received || received < 6*n {
		t.Errorf("%v packets received, %v by kind, %v verdicts timed: want equal, at least %d", received, packets, value(mfs, "tcpchaos_verdict_seconds"), 6*n)
	}
	if q := value(mfs, "tcpchaos_queue_kernel_queued_total"); q != received {
		t.Errorf("kernel queued %v packets, tcpchaos received %v", q, received)
	}
	if strings.Contains(s.chaos.stderr.String(), "\x1b[") || strings.Contains(s.chaos.stderr.String(), "| faults:") {
		t.Errorf("a status line on stderr, which is not a terminal:\n%q", s.chaos.stderr.String())
	}
}
