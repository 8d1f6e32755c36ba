package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/s3"
)

// AdminMux is where the admin endpoints are registered (internal/admin.Handler, behind its
// admin authentication).
type AdminMux interface {
	HandleAdmin(pattern string, h http.Handler)
}

// Admin serves the cache's operator API: purge (all, a bucket, one object), stats (all, a
// bucket) and prewarm tasks that fill the cache with a prefix's objects.
type Admin struct {
	Cache     *Tiered
	Responder *Responder
	// Bucket resolves a gateway bucket to its S3 client in the current snapshot.
	Bucket func(name string) (*s3.Bucket, bool)
	// Concurrency is the objects one prewarm task fetches at once (cache.warming.concurrency).
	Concurrency func() int
	Logger      *slog.Logger
	// Ctx bounds prewarm tasks (the service's lifetime).
	Ctx context.Context

	mu    sync.Mutex
	tasks map[string]*Task
}

// Register adds the endpoints to mux.
func (a *Admin) Register(mux AdminMux) {
	mux.HandleAdmin("POST /admin/cache/purge", http.HandlerFunc(a.purgeAll))
	mux.HandleAdmin("POST /admin/cache/purge/{bucket}", http.HandlerFunc(a.purgeBucket))
	mux.HandleAdmin("POST /admin/cache/purge/{bucket}/{key...}", http.HandlerFunc(a.purgeKey))
	mux.HandleAdmin("GET /admin/cache/stats", http.HandlerFunc(a.stats))
	mux.HandleAdmin("GET /admin/cache/stats/{bucket}", http.HandlerFunc(a.bucketStats))
	mux.HandleAdmin("POST /admin/cache/prewarm", http.HandlerFunc(a.prewarm))
	mux.HandleAdmin("GET /admin/cache/prewarm/tasks", http.HandlerFunc(a.listTasks))
	mux.HandleAdmin("GET /admin/cache/prewarm/status/{id}", http.HandlerFunc(a.taskStatus))
	mux.HandleAdmin("DELETE /admin/cache/prewarm/{id}", http.HandlerFunc(a.cancelTask))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	httperr.Write(w, httperr.New(status, msg, r.Header.Get("X-Request-Id")))
}

// ready refuses the request when no cache is configured, or bucket (if given) is unknown.
func (a *Admin) ready(w http.ResponseWriter, r *http.Request, bucket string) bool {
	if a.Cache == nil {
		fail(w, r, http.StatusNotFound, "the cache is not enabled")
		return false
	}
	if bucket != "" {
		if _, ok := a.Bucket(bucket); !ok {
			fail(w, r, http.StatusNotFound, fmt.Sprintf("bucket %q is not configured", bucket))
			return false
		}
	}
	return true
}

func (a *Admin) purgeAll(w http.ResponseWriter, r *http.Request) {
	if !a.ready(w, r, "") {
		return
	}
	if err := a.Cache.Purge(r.Context()); err != nil {
		fail(w, r, http.StatusInternalServerError, "purge failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Cache purged successfully", "timestamp": time.Now().Unix()})
}

func (a *Admin) purgeBucket(w http.ResponseWriter, r *http.Request) {
	bucket := r.PathValue("bucket")
	if !a.ready(w, r, bucket) {
		return
	}
	n, err := a.Cache.PurgeBucket(r.Context(), bucket)
	if err != nil {
		fail(w, r, http.StatusInternalServerError, "purge failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": fmt.Sprintf("Purged %d cache entries for bucket", n),
		"bucket": bucket, "entries_deleted": n})
}

func (a *Admin) purgeKey(w http.ResponseWriter, r *http.Request) {
	bucket, key := r.PathValue("bucket"), r.PathValue("key")
	if !a.ready(w, r, bucket) {
		return
	}
	found, err := a.Cache.Delete(r.Context(), Key{Bucket: bucket, Object: key})
	if err != nil {
		fail(w, r, http.StatusInternalServerError, "purge failed: "+err.Error())
		return
	}
	msg := "Cache entry purged"
	if !found {
		msg = "Cache entry not found"
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": msg, "bucket": bucket, "path": key, "deleted": found})
}

func (a *Admin) stats(w http.ResponseWriter, r *http.Request) {
	if !a.ready(w, r, "") {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": a.Cache.Stats(), "timestamp": time.Now().Unix()})
}

func (a *Admin) bucketStats(w http.ResponseWriter, r *http.Request) {
	bucket := r.PathValue("bucket")
	if !a.ready(w, r, bucket) {
		return
	}
	bt := a.Cache.Stats().Buckets[bucket]
	if bt.Layers == nil {
		bt.Layers = map[string]BucketStats{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "bucket": bucket, "data": bt, "timestamp": time.Now().Unix()})
}

// Task is one prewarm run, as the status endpoint reports it.
type Task struct {
	ID        string    `json:"id"`
	Bucket    string    `json:"bucket"`
	Path      string    `json:"path"`
	Recursive bool      `json:"recursive"`
	State     string    `json:"state"` // running, completed, failed, cancelled
	Listed    int64     `json:"files_listed"`
	Cached    int64     `json:"files_cached"`
	Skipped   int64     `json:"files_skipped"`
	Failed    int64     `json:"files_failed"`
	Bytes     int64     `json:"bytes_cached"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started_at"`
	Finished  time.Time `json:"finished_at,omitzero"`

	n      *taskCounters
	cancel context.CancelFunc
}

// taskCounters are a running task's progress, updated by its workers.
type taskCounters struct{ listed, cached, skipped, failed, bytes atomic.Int64 }

// prewarmRequest is the body of POST /admin/cache/prewarm.
type prewarmRequest struct {
	Bucket    string `json:"bucket"`
	Path      string `json:"path"`
	Recursive *bool  `json:"recursive"`
	MaxFiles  int64  `json:"max_files"`
}

// maxTasks bounds the finished tasks kept for the status endpoint.
const maxTasks = 100

func (a *Admin) prewarm(w http.ResponseWriter, r *http.Request) {
	var req prewarmRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, r, http.StatusBadRequest, "the body must be JSON like {\"bucket\":\"name\",\"path\":\"prefix/\"}: "+err.Error())
		return
	}
	if req.Bucket == "" {
		fail(w, r, http.StatusBadRequest, "bucket is required")
		return
	}
	if !a.ready(w, r, req.Bucket) {
		return
	}
	if !a.Responder.o.Policy(req.Bucket).Enabled {
		fail(w, r, http.StatusConflict, fmt.Sprintf("caching is disabled for bucket %q", req.Bucket))
		return
	}
	ctx, cancel := context.WithCancel(a.Ctx)
	t := &Task{ID: newID(), Bucket: req.Bucket, Path: req.Path, Recursive: req.Recursive == nil || *req.Recursive,
		State: "running", Started: time.Now(), cancel: cancel, n: &taskCounters{}}
	a.mu.Lock()
	if a.tasks == nil {
		a.tasks = map[string]*Task{}
	}
	a.pruneLocked()
	a.tasks[t.ID] = t
	a.mu.Unlock()
	go a.run(ctx, t, req.MaxFiles)
	writeJSON(w, http.StatusCreated, map[string]any{"status": "success", "task_id": t.ID, "message": "Prewarm task created"})
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pruneLocked drops the oldest finished tasks beyond maxTasks.
func (a *Admin) pruneLocked() {
	for len(a.tasks) >= maxTasks {
		var oldest *Task
		for _, t := range a.tasks {
			if t.cancel == nil && (oldest == nil || t.Started.Before(oldest.Started)) {
				oldest = t
			}
		}
		if oldest == nil {
			return
		}
		delete(a.tasks, oldest.ID)
	}
}

// run lists the prefix and fetches up to Concurrency objects at a time.
func (a *Admin) run(ctx context.Context, t *Task, maxFiles int64) {
	b, ok := a.Bucket(t.Bucket)
	var err error
	if !ok {
		err = errors.New("bucket is no longer configured")
	} else {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(1, a.Concurrency()))
		err = b.List(gctx, t.Path, t.Recursive, func(key string, size int64) error {
			if maxFiles > 0 && t.n.listed.Load() >= maxFiles {
				return errStopListing
			}
			t.n.listed.Add(1)
			g.Go(func() error {
				stored, err := a.Responder.Warm(gctx, b, t.Bucket, key)
				switch {
				case err != nil:
					t.n.failed.Add(1)
					a.Logger.Warn("prewarm: fetch failed", "bucket", t.Bucket, "key", key, "err", err)
				case stored:
					t.n.cached.Add(1)
					t.n.bytes.Add(size)
				default:
					t.n.skipped.Add(1)
				}
				return nil
			})
			return nil
		})
		if errors.Is(err, errStopListing) {
			err = nil
		}
		err = errors.Join(err, g.Wait())
	}
	cancelled := ctx.Err() != nil
	a.mu.Lock()
	defer a.mu.Unlock()
	t.cancel()
	t.cancel = nil
	t.Finished = time.Now()
	switch {
	case cancelled:
		t.State = "cancelled"
	case err != nil:
		t.State, t.Error = "failed", err.Error()
	default:
		t.State = "completed"
	}
}

var errStopListing = errors.New("max_files reached")

// snapshot copies a task's live counters for the JSON answer; a.mu is held.
func (t *Task) snapshot() Task {
	return Task{ID: t.ID, Bucket: t.Bucket, Path: t.Path, Recursive: t.Recursive, State: t.State,
		Listed: t.n.listed.Load(), Cached: t.n.cached.Load(), Skipped: t.n.skipped.Load(), Failed: t.n.failed.Load(),
		Bytes: t.n.bytes.Load(), Error: t.Error, Started: t.Started, Finished: t.Finished}
}

func (a *Admin) listTasks(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	out := make([]Task, 0, len(a.tasks))
	for _, t := range a.tasks {
		out = append(out, t.snapshot())
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out})
}

func (a *Admin) taskStatus(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	t, ok := a.tasks[r.PathValue("id")]
	var snap Task
	if ok {
		snap = t.snapshot()
	}
	a.mu.Unlock()
	if !ok {
		fail(w, r, http.StatusNotFound, "no such prewarm task")
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func (a *Admin) cancelTask(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	t, ok := a.tasks[r.PathValue("id")]
	running := ok && t.cancel != nil
	if running {
		t.cancel()
	}
	a.mu.Unlock()
	switch {
	case !ok:
		fail(w, r, http.StatusNotFound, "no such prewarm task")
	case !running:
		fail(w, r, http.StatusConflict, "the task has already finished")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "cancelled"})
	}
}
