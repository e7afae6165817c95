//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long the config file's directory must be still after a
// change before the file is read again: an editor's or a ConfigMap
// update's several steps make one reload.
const settle = 200 * time.Millisecond

// configWatch tells when the config file's directory, or the directory its
// symlinks lead to, has been still for settle after a change: an edit in
// place, an editor's rename over it, or the atomic symlink swap of a
// Kubernetes ConfigMap volume (config.yaml -> ..data/config.yaml, ..data
// -> ..2026_…, ..data replaced by a rename) all touch one of them.
type configWatch struct {
	w       *fsnotify.Watcher // nil when watching failed (then changed never fires)
	changed chan struct{}
	done    chan struct{}
	dirs    map[string]bool
	log     *slog.Logger
	stop    sync.Once
}

func (s *steering) newWatcher(log *slog.Logger) *configWatch {
	w := &configWatch{changed: make(chan struct{}, 1), done: make(chan struct{}), dirs: map[string]bool{}, log: log}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		fmt.Fprintf(s.status, "tcpchaos: warning: config file changes are not watched (SIGHUP and ctl reload still work): %v\n", err)
		return w
	}
	w.w = fw
	w.follow(s.configFile())
	go w.run()
	return w
}

// follow watches the directories of file and of its symlinks' target.
func (w *configWatch) follow(file string) {
	if w.w == nil {
		return
	}
	want := map[string]bool{filepath.Dir(file): true}
	if target, err := filepath.EvalSymlinks(file); err == nil {
		want[filepath.Dir(target)] = true
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.w.Remove(d) // a ConfigMap's old data directory is gone already
			delete(w.dirs, d)
		}
	}
	for d := range want {
		if w.dirs[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			w.log.Warn("watch config directory", "dir", d, "err", err)
			continue
		}
		w.dirs[d] = true
	}
}

func (w *configWatch) run() {
	t := time.NewTimer(settle)
	t.Stop()
	for {
		select {
		case <-w.done:
			t.Stop()
			return
		case _, ok := <-w.w.Events:
			if !ok {
				return
			}
			t.Reset(settle)
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.log.Warn("watch config directory", "err", err)
		case <-t.C:
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}

func (w *configWatch) close() {
	if w.w != nil {
		w.stop.Do(func() {
			close(w.done)
			w.w.Close()
		})
	}
}
