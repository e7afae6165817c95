package statusline

import (
	"strings"
	"testing"
)

// screen is a fake terminal that applies what the status line writes:
// "\r\x1b[2K" clears the line being written, "\n" ends it.
type screen struct {
	lines []string // finished lines
	cur   string   // the line the cursor is on
}

func (s *screen) Write(p []byte) (int, error) {
	text := string(p)
	for text != "" {
		switch {
		case strings.HasPrefix(text, erase):
			s.cur, text = "", text[len(erase):]
		case text[0] == '\n':
			s.lines, s.cur, text = append(s.lines, s.cur), "", text[1:]
		default:
			s.cur, text = s.cur+text[:1], text[1:]
		}
	}
	return len(p), nil
}

func TestLogLinesPrintAboveTheStatus(t *testing.T) {
	var sc screen
	l := New(&sc, nil)
	w := l.Writer(&sc)
	l.Set("1s / 10s")
	if sc.cur != "1s / 10s" {
		t.Fatalf("status %q, want 1s / 10s", sc.cur)
	}
	w.Write([]byte("fault one\n"))
	w.Write([]byte("fault two\n"))
	l.Set("2s / 10s")
	if want := []string{"fault one", "fault two"}; strings.Join(sc.lines, "|") != strings.Join(want, "|") || sc.cur != "2s / 10s" {
		t.Errorf("screen %q / %q, want lines %q with the status below", sc.lines, sc.cur, want)
	}
}

func TestUnfinishedLineHidesTheStatus(t *testing.T) {
	var sc screen
	l := New(&sc, nil)
	w := l.Writer(&sc)
	l.Set("status")
	w.Write([]byte("progress 10%"))
	l.Set("status 2")
	if sc.cur != "progress 10%" {
		t.Errorf("current line %q: the status overwrote an unfinished line", sc.cur)
	}
	w.Write([]byte(" done\n"))
	if len(sc.lines) != 1 || sc.lines[0] != "progress 10% done" || sc.cur != "status 2" {
		t.Errorf("screen %q / %q, want the finished line and the status below", sc.lines, sc.cur)
	}
}

func TestClearLeavesNoTrace(t *testing.T) {
	var sc screen
	l := New(&sc, nil)
	w := l.Writer(&sc)
	l.Set("status")
	l.Clear()
	l.Set("again")
	w.Write([]byte("summary\n"))
	if sc.cur != "" || len(sc.lines) != 1 || sc.lines[0] != "summary" {
		t.Errorf("screen %q / %q, want only the summary", sc.lines, sc.cur)
	}
}

func TestStatusIsCutToTheWidth(t *testing.T) {
	var sc screen
	l := New(&sc, func() int { return 8 })
	l.Set("0123456789\nsecond line")
	if sc.cur != "0123456" {
		t.Errorf("status %q, want its first line cut to 7 columns", sc.cur)
	}
	l.Set("ééééééééé")
	if sc.cur != "ééééééé" {
		t.Errorf("status %q, want 7 runes", sc.cur)
	}
}
