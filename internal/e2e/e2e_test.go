package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/yatagarasu/yatagarasu/internal/devstack"
	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

// do sends method on the raw request target exactly as written (no client-side cleaning).
func do(t *testing.T, method, base, rawTarget string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawTarget
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawTarget, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, rawTarget, err)
	}
	return res, body
}

// escapeKey turns an object key into a request path under prefix, escaping each segment.
func escapeKey(prefix, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return prefix + "/" + strings.Join(segs, "/")
}

// jsonError asserts a JSON error body with the given status and returns it.
func jsonError(t *testing.T, res *http.Response, body []byte, status int) httperr.Body {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", res.StatusCode, status, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content-type = %q; body %s", ct, body)
	}
	var b httperr.Body
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %q is not the JSON error: %v", body, err)
	}
	if b.Status != status || b.Error != http.StatusText(status) || b.Message == "" {
		t.Fatalf("error body = %+v", b)
	}
	return b
}

func TestGetAndHeadAreByteIdentical(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		for key, want := range objects {
			target := escapeKey("/products", key)
			res, body := do(t, http.MethodGet, st.GatewayURL, target)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %s", target, res.StatusCode, body)
			}
			if sha256.Sum256(body) != sha256.Sum256(want) {
				t.Fatalf("GET %s: %d bytes differ from the %d uploaded", target, len(body), len(want))
			}
			if res.Header.Get("X-Request-Id") == "" || res.Header.Get("X-Cache") != "MISS" {
				t.Fatalf("GET %s headers = %v", target, res.Header)
			}
			res, body = do(t, http.MethodHead, st.GatewayURL, target)
			if res.StatusCode != http.StatusOK || len(body) != 0 || res.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Fatalf("HEAD %s = %d len %s body %d", target, res.StatusCode, res.Header.Get("Content-Length"), len(body))
			}
		}
	})
}

func TestEncodedSlashIsPartOfTheKey(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/products/dir%2Fsub%2Fencoded-slash.txt")
		if res.StatusCode != http.StatusOK || !bytes.Equal(body, objects["dir/sub/encoded-slash.txt"]) {
			t.Fatalf("got %d %q", res.StatusCode, body)
		}
	})
}

func TestRequestIDIsKeptFromTheClient(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		res, _ := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "X-Request-Id", "client-chosen-id-123")
		if got := res.Header.Get("X-Request-Id"); got != "client-chosen-id-123" {
			t.Fatalf("x-request-id = %q", got)
		}
		res, body := do(t, http.MethodGet, st.GatewayURL, "/nowhere/a.txt", "X-Request-Id", "client-chosen-id-456")
		if b := jsonError(t, res, body, http.StatusNotFound); b.RequestID != "client-chosen-id-456" {
			t.Fatalf("request_id = %q", b.RequestID)
		}
	})
}

func TestNotFound(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/unknown/a.txt")
		if b := jsonError(t, res, body, http.StatusNotFound); b.RequestID == "" {
			t.Fatal("unknown prefix: no request_id")
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, "/productsX/a.txt") // not on a segment boundary
		jsonError(t, res, body, http.StatusNotFound)
		res, body = do(t, http.MethodGet, st.GatewayURL, "/products/no-such-key.txt")
		if b := jsonError(t, res, body, http.StatusNotFound); b.RequestID == "" {
			t.Fatal("missing key: no request_id")
		}
	})
}

func TestMethodNotAllowed(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch} {
			res, body := do(t, m, st.GatewayURL, "/products/a.txt")
			jsonError(t, res, body, http.StatusMethodNotAllowed)
			if res.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
				t.Fatalf("%s: Allow = %q", m, res.Header.Get("Allow"))
			}
		}
		res, _ := do(t, http.MethodOptions, st.GatewayURL, "/products/a.txt")
		if res.StatusCode != http.StatusOK || res.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Fatalf("OPTIONS = %d %v", res.StatusCode, res.Header)
		}
	})
}

func TestRequestLimits(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/products/"+strings.Repeat("a", 9000))
		jsonError(t, res, body, http.StatusRequestURITooLong)
		res, body = do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "X-Big", strings.Repeat("b", 70<<10))
		jsonError(t, res, body, http.StatusRequestHeaderFieldsTooLarge)
	})
}

func TestTraversalNeverLeavesTheBucket(t *testing.T) {
	attempts := map[string]int{
		"/products/../secret/x":             http.StatusBadRequest,
		"/products/%2e%2e/secret/x":         http.StatusBadRequest,
		"/products/%2E%2E/secret/x":         http.StatusBadRequest,
		"/products/..%2fsecret/x":           http.StatusBadRequest,
		"/products/%2e%2e%2fsecret%2fx":     http.StatusBadRequest,
		"/products/%252e%252e/secret/x":     http.StatusBadRequest,
		"/products/%252e%252e%252fsecret/x": http.StatusBadRequest,
		"/products/..\\secret\\x":           http.StatusBadRequest,
		"/products/./../secret/x":           http.StatusBadRequest,
		"/products/%00/../secret/x":         http.StatusBadRequest,
		"/products//../secret/x":            http.StatusBadRequest,
		"/products/secret/x":                http.StatusNotFound, // a key inside products, not the secret bucket
	}
	each(t, func(t *testing.T, st *devstack.Stack) {
		for target, want := range attempts {
			res, body := do(t, http.MethodGet, st.GatewayURL, target)
			if bytes.Contains(body, secretBody) {
				t.Fatalf("%s leaked the secret bucket", target)
			}
			jsonError(t, res, body, want)
		}
	})
}

func TestClientInternalHeadersCannotBypassThePipeline(t *testing.T) {
	forged := []string{
		"X-Yatagarasu-Bucket", "secret", "X-Yatagarasu-Key", "x",
		"X-Yatagarasu-Ts", "9999999999", "X-Yatagarasu-Signature", strings.Repeat("0", 64),
	}
	each(t, func(t *testing.T, st *devstack.Stack) {
		// Allowed path: the forged headers are replaced by the signed ones for products/a.txt.
		res, body := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", forged...)
		if res.StatusCode != http.StatusOK || !bytes.Equal(body, objects["a.txt"]) {
			t.Fatalf("forged headers changed the object: %d %q", res.StatusCode, body[:min(len(body), 80)])
		}
		// Denied path: the forged headers do not route the request to the origin.
		res, body = do(t, http.MethodGet, st.GatewayURL, "/unknown/x", forged...)
		jsonError(t, res, body, http.StatusNotFound)
		res, body = do(t, http.MethodPut, st.GatewayURL, "/secret/x", forged...)
		jsonError(t, res, body, http.StatusMethodNotAllowed)
	})
}

func TestOriginRefusesUnsignedRequests(t *testing.T) {
	st := stacks[0]
	for _, hdr := range [][]string{
		nil,
		{"X-Yatagarasu-Bucket", "secret", "X-Yatagarasu-Key", "x"},
		{"X-Yatagarasu-Bucket", "secret", "X-Yatagarasu-Key", "x", "X-Yatagarasu-Ts", "1", "X-Yatagarasu-Signature", "abc"},
	} {
		res, body := do(t, http.MethodGet, st.OriginURL, "/secret/x", hdr...)
		jsonError(t, res, body, http.StatusForbidden)
		if bytes.Contains(body, secretBody) {
			t.Fatal("origin leaked the secret bucket")
		}
	}
}

func TestRangeAndConditionalRequests(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		want := objects["a.txt"]
		res, body := do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "Range", "bytes=100-199")
		if res.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[100:200]) ||
			res.Header.Get("Content-Range") != "bytes 100-199/1024" {
			t.Fatalf("range = %d %q %d bytes", res.StatusCode, res.Header.Get("Content-Range"), len(body))
		}
		res, _ = do(t, http.MethodGet, st.GatewayURL, "/products/a.txt")
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "If-None-Match", etag)
		if res.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("If-None-Match = %d %d bytes", res.StatusCode, len(body))
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNotModified {
			t.Fatalf("If-Modified-Since = %d %s", res.StatusCode, body)
		}
		res, body = do(t, http.MethodGet, st.GatewayURL, "/products/a.txt", "Range", "bytes=5000-6000")
		if res.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("range past end = %d %s", res.StatusCode, body)
		}
	})
}

func TestS3FailuresMapToGatewayErrors(t *testing.T) {
	each(t, func(t *testing.T, st *devstack.Stack) {
		res, body := do(t, http.MethodGet, st.GatewayURL, "/badcreds/a.txt")
		b := jsonError(t, res, body, http.StatusBadGateway)
		if strings.Contains(string(body), "not-the-secret-key") || strings.Contains(string(body), s3srv.AccessKey) {
			t.Fatalf("502 body leaks credentials: %s", body)
		}
		if b.RequestID == "" {
			t.Fatal("502 without request_id")
		}
		// A backend that never answers: 504 while its circuit is closed; once the breaker or the
		// health probe has taken it out of rotation, extproc answers 503 + Retry-After without
		// calling it. Which one depends on whether the probe ran yet; both are correct and JSON.
		res, body = do(t, http.MethodGet, st.GatewayURL, "/slow/a.txt")
		switch res.StatusCode {
		case http.StatusGatewayTimeout:
			jsonError(t, res, body, http.StatusGatewayTimeout)
		default:
			jsonError(t, res, body, http.StatusServiceUnavailable)
			if res.Header.Get("Retry-After") == "" {
				t.Fatal("503 for an open circuit without Retry-After")
			}
		}
	})
}

func TestAdminEndpoints(t *testing.T) {
	st := stacks[0]
	res, body := do(t, http.MethodGet, st.AdminURL, "/health")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("health = %d %s", res.StatusCode, body)
	}
	// Two buckets point at a broken backend, so the service must not claim to be ready.
	res, body = do(t, http.MethodGet, st.AdminURL, "/ready")
	if res.StatusCode != http.StatusServiceUnavailable || !(strings.Contains(string(body), "badcreds") || strings.Contains(string(body), "slow")) {
		t.Fatalf("ready with broken buckets = %d %s", res.StatusCode, body)
	}
	do(t, http.MethodGet, st.GatewayURL, "/products/a.txt")
	res, body = do(t, http.MethodGet, st.AdminURL, "/metrics")
	for _, m := range []string{
		`yatagarasu_extproc_decisions_total{bucket="products",outcome="allow"`,
		`yatagarasu_origin_requests_total{bucket="products",status="200"}`,
	} {
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), m) {
			t.Fatalf("metrics lack %s", m)
		}
	}
}
