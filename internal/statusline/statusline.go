// Package statusline keeps one status line at the bottom of a terminal,
// below the lines that the program's other output prints: each write
// through one of its writers first erases the status line, and once the
// output ends a line, the status line is drawn again under it.
package statusline

import (
	"io"
	"strings"
	"sync"
)

// erase returns the cursor to the start of the line and clears the line.
const erase = "\r\x1b[2K"

// Line is a status line on a terminal. Its methods and its writers are
// safe for concurrent use.
type Line struct {
	mu    sync.Mutex
	term  io.Writer
	width func() int // the terminal's columns (0: unknown)
	text  string
	shown bool // the status line is on the screen
	// midLine: the last write left a line unfinished, which the status
	// line must not overwrite; it is drawn again once the line ends.
	midLine bool
	done    bool // Clear was called: nothing is drawn any more
}

// New returns a status line drawn on term, cut to width() columns less
// one (width may be nil, or return 0 when the width is not known). It is
// empty, and drawn only once Set gives it a text.
func New(term io.Writer, width func() int) *Line {
	if width == nil {
		width = func() int { return 0 }
	}
	return &Line{term: term, width: width}
}

// Set replaces the status line's text and draws it, unless a line of other
// output is unfinished or Clear was called.
func (l *Line) Set(text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text = text
	l.draw()
}

// Clear erases the status line for good: after it the writers pass
// everything through and Set draws nothing.
func (l *Line) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hide()
	l.done = true
}

// Writer returns a writer that writes to w (the terminal itself, or
// another stream shown on it) around the status line.
func (l *Line) Writer(w io.Writer) io.Writer { return writer{l, w} }

type writer struct {
	l *Line
	w io.Writer
}

// Write erases the status line, writes p and, when p ends a line, draws
// the status line again.
func (w writer) Write(p []byte) (int, error) {
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hide()
	n, err := w.w.Write(p)
	if len(p) > 0 {
		l.midLine = p[len(p)-1] != '\n'
	}
	l.draw()
	return n, err
}

// draw shows the text if nothing prevents it; l.mu is held. A failed
// write to the terminal is not the output's failure: it is ignored.
func (l *Line) draw() {
	if l.done || l.midLine || l.text == "" {
		return
	}
	text, _, _ := strings.Cut(l.text, "\n")
	if w := l.width(); w > 1 {
		text = cut(text, w-1) // the cursor stays on the line: no wrap
	}
	_, _ = io.WriteString(l.term, erase+text)
	l.shown = true
}

// hide erases the status line if it is shown; l.mu is held.
func (l *Line) hide() {
	if l.shown {
		_, _ = io.WriteString(l.term, erase)
		l.shown = false
	}
}

// cut returns text's first n runes.
func cut(text string, n int) string {
	for i := range text {
		if n == 0 {
			return text[:i]
		}
		n--
	}
	return text
}
