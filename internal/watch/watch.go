// Package watch reloads the config when its file changes: it watches the file's directory (editors
// rename over the file, Kubernetes swaps a ..data symlink), debounces, compares a content hash,
// and polls slowly as a fallback for filesystems where events get lost.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// DefaultPollInterval is how often the file's hash is checked even without events.
const DefaultPollInterval = 10 * time.Second

// ReloadFunc applies the current content of the watched file.
type ReloadFunc func(ctx context.Context) error

// Options configure a Watcher.
type Options struct {
	Path         string        // the config file
	Debounce     time.Duration // quiet time after the last event before reloading; 0 → config.DefaultDebounce
	PollInterval time.Duration // hash check without events; 0 → DefaultPollInterval
	PollOnly     bool          // skip fsnotify (filesystems without inotify); rely on polling
	Reload       ReloadFunc
	Logger       *slog.Logger
}

// Watcher calls Reload whenever the content of Path changes.
type Watcher struct {
	opts    Options
	path    string // cleaned
	fs      *fsnotify.Watcher
	reloads atomic.Uint64

	mu       sync.Mutex
	lastHash [sha256.Size]byte
	hashed   bool

	closeOnce sync.Once
}

// New starts watching the file's directory at once (events that happen before Run are kept).
// Run must be called, or Close, to release the watch.
func New(opts Options) (*Watcher, error) {
	if opts.Path == "" {
		return nil, errors.New("watch: empty path")
	}
	if opts.Reload == nil {
		return nil, errors.New("watch: nil reload func")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = config.DefaultDebounce
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{opts: opts, path: filepath.Clean(opts.Path)}
	if opts.PollOnly {
		return w, nil
	}
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", w.path, err)
	}
	dir := filepath.Dir(w.path)
	if err := fs.Add(dir); err != nil {
		_ = fs.Close()
		return nil, fmt.Errorf("watch directory %s: %w", dir, err)
	}
	w.fs = fs
	return w, nil
}

// Reloads is how many times Reload has been called (for tests and status pages).
func (w *Watcher) Reloads() uint64 { return w.reloads.Load() }

// ReloadNow records the file's current hash and reloads unconditionally (used at start-up).
func (w *Watcher) ReloadNow(ctx context.Context) error {
	if data, err := os.ReadFile(w.path); err == nil {
		w.mu.Lock()
		w.lastHash, w.hashed = sha256.Sum256(data), true
		w.mu.Unlock()
	}
	return w.reload(ctx, "startup")
}

// Close releases the directory watch; Run calls it on return.
func (w *Watcher) Close() error {
	var err error
	w.closeOnce.Do(func() {
		if w.fs != nil {
			err = w.fs.Close()
		}
	})
	return err
}

// Run watches until ctx is cancelled. Reload errors are logged (the caller's ReloadFunc keeps
// the last good state); Run itself only fails if the watch breaks down.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.Close()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fs != nil {
		events, errs = w.fs.Events, w.fs.Errors
	}
	poll := time.NewTicker(w.opts.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(w.opts.Debounce)
	debounce.Stop()
	defer debounce.Stop()
	w.opts.Logger.InfoContext(ctx, "watching config file", "path", w.path,
		"debounce", w.opts.Debounce.String(), "poll_interval", w.opts.PollInterval.String(), "fsnotify", w.fs != nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("watch %s: event channel closed", w.path)
			}
			if w.relevant(ev) {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				return fmt.Errorf("watch %s: error channel closed", w.path)
			}
			// Lost events (queue overflow) are covered by the hash check; look now.
			w.opts.Logger.WarnContext(ctx, "config watch error; checking the file", "path", w.path, "error", err.Error())
			debounce.Reset(w.opts.Debounce)
		case <-debounce.C:
			w.check(ctx, "fsnotify")
		case <-poll.C:
			w.check(ctx, "poll")
		}
	}
}

// relevant reports whether ev could change what reading the file returns: an event on the file
// itself, or any create/rename/remove in the directory (rename-over, ..data symlink swaps).
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if filepath.Clean(ev.Name) == w.path {
		return true
	}
	return ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove)
}

// check reloads if the file's content hash changed since the last reload.
func (w *Watcher) check(ctx context.Context, trigger string) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		// Mid-swap or deleted: keep the current config; the next event or poll looks again.
		w.opts.Logger.WarnContext(ctx, "config file unreadable; keeping the current config", "path", w.path, "error", err.Error())
		return
	}
	sum := sha256.Sum256(data)
	w.mu.Lock()
	unchanged := w.hashed && sum == w.lastHash
	w.lastHash, w.hashed = sum, true
	w.mu.Unlock()
	if unchanged {
		return
	}
	_ = w.reload(ctx, trigger)
}

func (w *Watcher) reload(ctx context.Context, trigger string) error {
	w.reloads.Add(1)
	if err := w.opts.Reload(ctx); err != nil {
		w.opts.Logger.ErrorContext(ctx, "config reload failed", "path", w.path, "trigger", trigger, "error", err.Error())
		return err
	}
	w.opts.Logger.InfoContext(ctx, "config reloaded", "path", w.path, "trigger", trigger)
	return nil
}
