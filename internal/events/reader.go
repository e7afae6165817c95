package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxLine bounds one line of an events file: an event's line is a few
// hundred bytes, so a longer line is not one.
const MaxLine = 64 << 10

// Reader reads an events file (JSON lines, as JSONLines writes them) event
// by event. Blank lines are skipped.
type Reader struct {
	name string
	sc   *bufio.Scanner
	line int   // lines read
	err  error // sticky: the error that ended the reading
}

// NewReader reads events from r; name names it in errors.
func NewReader(r io.Reader, name string) *Reader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLine)
	return &Reader{name: name, sc: sc}
}

// Next returns the next event. At the end of the input it returns io.EOF
// (unwrapped); any other error names the input and the line number (from
// 1) and says what is wrong with the line. Either ends the reading: later
// calls return the same error.
func (r *Reader) Next() (Event, error) {
	for r.err == nil {
		if !r.sc.Scan() {
			r.err = io.EOF
			if err := r.sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					err = fmt.Errorf("longer than %d bytes", MaxLine)
				}
				r.err = fmt.Errorf("%s: line %d: %w", r.name, r.line+1, err)
			}
			break
		}
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			// one line, though the fields' errors are joined by newlines
			r.err = fmt.Errorf("%s: line %d: %s", r.name, r.line, strings.ReplaceAll(err.Error(), "\n", "; "))
			break
		}
		return e, nil
	}
	return Event{}, r.err
}

// ReadFile reads every event of the events file at path.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	defer f.Close()
	return ReadAll(NewReader(f, path))
}

// ReadAll reads r to its end and returns its events.
func ReadAll(r *Reader) ([]Event, error) {
	var evs []Event
	for {
		e, err := r.Next()
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, e)
	}
}
