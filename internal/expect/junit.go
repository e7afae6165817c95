package expect

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// junitSuites is the root of a JUnit XML report.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit writes r's expectations as JUnit XML: one test suite for the
// run, one test case per expectation (classname tcpchaos.TYPE), failing
// with the figure and the counter-examples, or skipped.
func (r Report) WriteJUnit(w io.Writer) error {
	name := fmt.Sprintf("tcpchaos %s %s", r.Run.Command, r.Run.Config)
	s := junitSuite{Name: name, Time: fmt.Sprintf("%.3f", r.Run.DurationSeconds), Timestamp: r.Run.Start.UTC().Format("2006-01-02T15:04:05")}
	for _, e := range r.Expectations {
		c := junitCase{Name: e.Name, Classname: "tcpchaos." + e.Type, Time: "0", SystemOut: e.Text + ": " + e.Figure}
		switch {
		case e.Skipped != "":
			c.Skipped = &junitSkipped{Message: e.Skipped}
			s.Skipped++
		case !e.Holds:
			var b strings.Builder
			fmt.Fprintf(&b, "%s\n%s\n", e.Text, e.Figure)
			for _, ce := range e.CounterExamples {
				fmt.Fprintf(&b, "%s %s: %s\n", ce.Time.Format(TimeFormat), ce.Conn, ce.What)
			}
			if n := uint64(len(e.CounterExamples)); e.Failures > n {
				fmt.Fprintf(&b, "... and %d more\n", e.Failures-n)
			}
			c.Failure = &junitFailure{Message: e.Figure, Type: e.Type, Text: b.String()}
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	doc := junitSuites{Name: "tcpchaos", Tests: s.Tests, Failures: s.Failures, Skipped: s.Skipped, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
