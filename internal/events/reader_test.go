package events

import (
	"io"
	"strings"
	"testing"
)

func TestReaderReadsLines(t *testing.T) {
	evs := sampleEvents()
	var b strings.Builder
	j := NewJSONLines(&b)
	for _, e := range evs {
		j.Emit(e)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	// A blank line in the middle is skipped.
	in := strings.Replace(b.String(), "\n", "\n\n", 1)
	got, err := ReadAll(NewReader(strings.NewReader(in), "x.jsonl"))
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(got) != len(evs) {
		t.Fatalf("read %d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		if !got[i].Time.Equal(evs[i].Time) || got[i].Conn() != evs[i].Conn() || got[i].Kind != evs[i].Kind || got[i].Rule != evs[i].Rule {
			t.Errorf("event %d = %+v, want %+v", i, got[i], evs[i])
		}
	}
}

func TestReaderErrorNamesLine(t *testing.T) {
	var b strings.Builder
	j := NewJSONLines(&b)
	j.Emit(sampleEvents()[0])
	j.Flush()
	good := b.String()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", good + "\n{oops\n", "x.jsonl: line 3: invalid character"},
		{"bad kind", good + strings.Replace(good, `"kind":"fin"`, `"kind":"fin2"`, 1), `x.jsonl: line 2: event: kind: unknown`},
		{"too long", good + strings.Repeat(" ", MaxLine+1) + "\n", "x.jsonl: line 2: longer than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in), "x.jsonl")
			if _, err := r.Next(); err != nil {
				t.Fatalf("first event: %v", err)
			}
			_, err := r.Next()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("second Next() = %v, want an error containing %q", err, tc.want)
			}
			if _, again := r.Next(); again != err {
				t.Errorf("Next after an error = %v, want the same error", again)
			}
		})
	}
}

func TestReaderEOF(t *testing.T) {
	r := NewReader(strings.NewReader("\n \n"), "empty")
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next() on blank lines = %v, want io.EOF", err)
	}
}
