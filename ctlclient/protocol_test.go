package ctlclient

import "testing"

func TestDefaultPath(t *testing.T) {
	for _, tc := range []struct {
		netns, want string
	}{
		{"", "/run/tcpchaos/queue-100.sock"},
		{"staging", "/run/tcpchaos/staging-queue-100.sock"},
		{"/run/netns/staging", "/run/tcpchaos/staging-queue-100.sock"},
		{"/proc/42/ns/net", "/run/tcpchaos/proc-42-ns-net-queue-100.sock"},
	} {
		if got := DefaultPath(100, tc.netns); got != tc.want {
			t.Errorf("DefaultPath(100, %q) = %q, want %q", tc.netns, got, tc.want)
		}
	}
}
