package netlab

import "testing"

func TestParseNstat(t *testing.T) {
	got, err := parseNstat("#kernel\nIpInReceives                    42                  0.0\nTcpExtTCPSynRetrans 0 0.0\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["IpInReceives"] != 42 || got["TcpExtTCPSynRetrans"] != 0 {
		t.Errorf("parseNstat = %v, want IpInReceives 42 and TcpExtTCPSynRetrans 0", got)
	}
	for _, bad := range []string{"IpInReceives -1 0.0\n", "TcpOutRsts x 0.0\n", "TcpOutRsts\n"} {
		if _, err := parseNstat(bad); err == nil {
			t.Errorf("parseNstat(%q) succeeded, want an error", bad)
		}
	}
}
