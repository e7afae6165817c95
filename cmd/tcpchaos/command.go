//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Defaults of the command under test (`run -- CMD`).
const (
	// defaultLinger is how long interception goes on after the command
	// exited, so that the closes and retransmissions that follow it are
	// seen.
	defaultLinger = 2 * time.Second
	// stopGrace is how long a command stopped by SIGTERM (on SIGINT,
	// SIGTERM or --duration) has to exit before its process group gets
	// SIGKILL.
	stopGrace = 5 * time.Second
	// pipeGrace bounds the wait for the command's standard streams once
	// it exited (a child it left behind may hold them).
	pipeGrace = time.Second
)

// testCommand is the command a run starts under its faults, in its own
// process group, with tcpchaos's environment and standard streams.
type testCommand struct {
	cmd    *exec.Cmd
	linger time.Duration
	log    io.Writer // progress lines

	done   chan struct{} // closed once the command ended and lingering is over
	status int           // exit status, 128+N for signal N; set before done closes
	err    error         // why the command could not be started; set before done closes
}

// newTestCommand prepares args[0] with args[1:] to run with the given
// standard streams.
func newTestCommand(args []string, linger time.Duration, stdin io.Reader, stdout, stderr io.Writer, log io.Writer) *testCommand {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// Its own process group, so that stopping it stops its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeGrace
	return &testCommand{cmd: cmd, linger: linger, log: log, done: make(chan struct{})}
}

// launch starts the command on a goroutine of its own and returns at
// once. That goroutine is not locked to a thread, so the command never
// starts on the thread that entered --netns: it runs in the namespace
// tcpchaos was started in. end is called once the command exited and
// linger passed (at once if ctx is done meanwhile), or at once when the
// command cannot be started. When ctx is done before the command exited,
// the command is stopped: SIGTERM to its process group, SIGKILL after
// stopGrace.
func (tc *testCommand) launch(ctx context.Context, end func()) {
	go func() {
		defer close(tc.done)
		defer end()
		if err := tc.cmd.Start(); err != nil {
			tc.err = fmt.Errorf("start command %q: %w", strings.Join(tc.cmd.Args, " "), err)
			return
		}
		pgid := tc.cmd.Process.Pid
		fmt.Fprintf(tc.log, "tcpchaos: started %s (pid %d)\n", strings.Join(tc.cmd.Args, " "), pgid)
		exited := make(chan error, 1)
		go func() { exited <- tc.cmd.Wait() }()
		var err error
		select {
		case err = <-exited:
		case <-ctx.Done():
			fmt.Fprintf(tc.log, "tcpchaos: stopping the command: SIGTERM to process group %d (SIGKILL after %s)\n", pgid, stopGrace)
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case err = <-exited:
			case <-time.After(stopGrace):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				err = <-exited
			}
		}
		tc.status = exitStatus(tc.cmd.ProcessState)
		fmt.Fprintf(tc.log, "tcpchaos: the command exited with status %d%s\n", tc.status, waitNote(err))
		if ctx.Err() != nil || tc.linger == 0 {
			return
		}
		fmt.Fprintf(tc.log, "tcpchaos: intercepting %s more (--linger)\n", tc.linger)
		select {
		case <-time.After(tc.linger):
		case <-ctx.Done():
		}
	}()
}

// exitStatus is a process's exit status as a shell gives it: the status
// it exited with, or 128+N when signal N killed it.
func exitStatus(ps interface{ Sys() any }) int {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return -1
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// waitNote explains a wait error other than the exit status itself (the
// command's streams held open by a child it left behind).
func waitNote(err error) string {
	if err == nil || errors.As(err, new(*exec.ExitError)) {
		return ""
	}
	return fmt.Sprintf(" (%v)", err)
}
