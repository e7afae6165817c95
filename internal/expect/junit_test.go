package expect

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport(t).WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Skipped  int      `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v in\n%s", err, b.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Skipped != 1 || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 3 {
		t.Fatalf("counts %+v", doc)
	}
	s := doc.Suites[0]
	if s.Name != "tcpchaos replay c.yaml" {
		t.Errorf("suite %q", s.Name)
	}
	pass, fail, skip := s.Cases[0], s.Cases[1], s.Cases[2]
	if pass.Name != "syn-retransmitted" || pass.Classname != "tcpchaos.follows" || pass.Failure != nil || pass.Skipped != nil {
		t.Errorf("holding case %+v", pass)
	}
	if fail.Name != "no-stuck-syn-sent" || fail.Failure == nil || !strings.Contains(fail.Failure.Text, connName(1)) ||
		!strings.HasPrefix(fail.Failure.Message, "longest stay in SYN_SENT 1.021s") {
		t.Errorf("failing case %+v", fail)
	}
	if skip.Skipped == nil || skip.Skipped.Message != "no command ran" || skip.Failure != nil {
		t.Errorf("skipped case %+v", skip)
	}
}
