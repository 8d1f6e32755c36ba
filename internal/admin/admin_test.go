package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	body := map[string]string{}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return res, body
}

func TestHealthAlwaysOK(t *testing.T) {
	h := New(Options{Ready: func(context.Context) error { return errors.New("s3 down") }})
	res, body := get(t, h, "/health")
	if res.StatusCode != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("health = %d %v", res.StatusCode, body)
	}
}

func TestReadyReflectsCheckAndCachesIt(t *testing.T) {
	var calls atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	now := time.Unix(1000, 0)
	h := New(Options{
		Ready: func(context.Context) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("bucket products: connection refused")
			}
			return nil
		},
		ReadyCacheTTL: time.Second,
		Now:           func() time.Time { return now },
	})
	res, body := get(t, h, "/ready")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body["reason"], "connection refused") {
		t.Fatalf("ready while failing = %d %v", res.StatusCode, body)
	}
	failing.Store(false)
	if res, _ := get(t, h, "/ready"); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("cached result not used: %d", res.StatusCode)
	}
	if calls.Load() != 1 {
		t.Fatalf("check ran %d times within the TTL", calls.Load())
	}
	now = now.Add(2 * time.Second)
	if res, body := get(t, h, "/ready"); res.StatusCode != http.StatusOK || body["status"] != "ready" {
		t.Fatalf("ready after recovery = %d %v", res.StatusCode, body)
	}
}

func TestMetricsServesRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "yatagarasu_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	h := New(Options{Gatherer: reg})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "yatagarasu_test_total 3") {
		t.Fatalf("metrics = %d %s", rec.Code, rec.Body.String())
	}
}

func TestUnknownPath404(t *testing.T) {
	h := New(Options{})
	if res, _ := get(t, h, "/admin/nothing"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("got %d", res.StatusCode)
	}
}

func TestAdminEndpointsNeedAuth(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	off := New(Options{})
	off.HandleAdmin("GET /admin/thing", ok)
	rec := httptest.NewRecorder()
	off.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/thing", nil))
	var b httperr.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || rec.Code != http.StatusForbidden || b.Status != 403 || !strings.Contains(b.Message, "disabled") {
		t.Fatalf("without auth = %d %s", rec.Code, rec.Body)
	}
	on := New(Options{AdminAuth: func(r *http.Request) *httperr.Body {
		if r.Header.Get("Authorization") != "Bearer good" {
			b := httperr.New(http.StatusUnauthorized, "admin token required", "")
			return &b
		}
		return nil
	}})
	on.HandleAdmin("GET /admin/thing", ok)
	rec = httptest.NewRecorder()
	on.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/thing", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token = %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/thing", nil)
	req.Header.Set("Authorization", "Bearer good")
	rec = httptest.NewRecorder()
	on.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("good token = %d", rec.Code)
	}
}

func TestDrainTurnsReadyOffAtOnce(t *testing.T) {
	h := New(Options{Ready: func(context.Context) error { return nil }})
	if res, _ := get(t, h, "/ready"); res.StatusCode != http.StatusOK {
		t.Fatalf("ready = %d", res.StatusCode)
	}
	h.Drain() // the cached "ready" must not outlive the drain
	if res, body := get(t, h, "/ready"); res.StatusCode != http.StatusServiceUnavailable || body["status"] != "draining" {
		t.Fatalf("ready while draining = %d %v", res.StatusCode, body)
	}
	if res, _ := get(t, h, "/health"); res.StatusCode != http.StatusOK {
		t.Fatalf("health while draining = %d", res.StatusCode)
	}
}
