package e2e

import (
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// statusLine is the status line of `run` under configs/lost-first-syn.yaml
// with --duration 20s.
var statusLine = regexp.MustCompile(`^tcpchaos: [0-9.]+m?s / 20s \| \d+ tracked \| faults: lose-first-syn (\d+) \| 0 held$`)

// TestStatusLineOnATerminal: with stderr a terminal (a pseudo-terminal),
// `run -- CMD` keeps a status line under its other lines: replayed as a
// terminal shows it, tcpchaos's lines (the fault line among them) and the
// lines CMD writes to its stderr are whole lines with no status in them,
// the status said the rule's fault once it happened, and it is gone at the
// end. Stdout, not a terminal, gets no escape. With stderr not a terminal
// (every other test) there is no status line: TestMetricsCountTheTraffic
// checks that too.
func TestStatusLineOnATerminal(t *testing.T) {
	t.Parallel()
	tp := netlabtest.NewTopology(t)
	ln := tp.Server.Listen(t, "tcp", tp.Server4.String()+":8080")
	netlabtest.Serve(t, ln, ioTimeout, pingPong(0))
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 200}); err != nil {
		t.Fatal(err)
	}
	// CMD writes to its stderr (the terminal, through tcpchaos) before and
	// after the test's connection.
	cmd := exec.Command(tcpchaosBin, "run", "-c", configPath("lost-first-syn.yaml"), "--netns", tp.Router.Path, "--queue", nextQueue(),
		"--duration", "20s", "--linger", "0", "--", "sh", "-c", "echo cmd-line-1 >&2; sleep 3; echo cmd-line-2 >&2; sleep 1")
	var stdout lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var screen lockedBuffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&screen, ptmx) // until EIO: the terminal's last writer exited
	}()
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(screen.String(), "tcpchaos: intercepting") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	c, err := tp.Client.Dial("tcp", tp.Server4.String()+":8080", ioTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	request(t, c)
	c.Close()
	err = cmd.Wait()
	<-read
	if err != nil {
		t.Fatalf("tcpchaos: %v\nterminal:\n%q", err, screen.String())
	}
	lines, last, drawn := replayTerminal(screen.String())
	t.Logf("terminal lines:\n%s\nstatus lines drawn: %d, the last: %q", strings.Join(lines, "\n"), len(drawn), drawn[max(len(drawn)-1, 0):])
	if last != "" {
		t.Errorf("the terminal's last line is %q, want the status line erased", last)
	}
	faultLines, cmdLines := 0, 0
	for _, l := range lines {
		if l == "cmd-line-1" || l == "cmd-line-2" {
			cmdLines++
		}
		if strings.Contains(l, "| faults:") {
			t.Errorf("a status line was left among the lines: %q", l)
		}
		if strings.Contains(l, "lose-first-syn") && strings.Contains(l, "drop") {
			faultLines++
		}
	}
	if faultLines != 1 || cmdLines != 2 {
		t.Errorf("%d fault lines and %d of CMD's lines, want 1 and 2 (whole, each on its own line)", faultLines, cmdLines)
	}
	hit := false
	for _, d := range drawn {
		m := statusLine.FindStringSubmatch(d)
		if m == nil {
			t.Errorf("status line %q does not read as elapsed / duration, tracked, faults, held", d)
			continue
		}
		hit = hit || m[1] == "1"
	}
	if !hit {
		t.Errorf("no status line showed the rule's fault")
	}
	if strings.Contains(stdout.String(), "\x1b[") || !strings.Contains(stdout.String(), "tcpchaos: ran") {
		t.Errorf("stdout (not a terminal) has escapes or lacks the summary:\n%q", stdout.String())
	}
}

// replayTerminal plays what a program wrote to a terminal: "\r\x1b[2K"
// clears the line the cursor is on, "\r\n" ends it. It returns the lines
// ended, the line left under the cursor, and every line that was cleared
// before it ended (the status lines drawn).
func replayTerminal(out string) (lines []string, last string, cleared []string) {
	const erase = "\r\x1b[2K"
	for out != "" {
		switch {
		case strings.HasPrefix(out, erase):
			if last != "" {
				cleared = append(cleared, last)
			}
			last, out = "", out[len(erase):]
		case strings.HasPrefix(out, "\r\n"):
			lines, last, out = append(lines, last), "", out[2:]
		default:
			last, out = last+out[:1], out[1:]
		}
	}
	return lines, last, cleared
}
