// Package authtest makes signing keys, tokens and a JWKS endpoint for tests of the auth stage,
// so unit, end-to-end and benchmark code sign tokens the same way an identity provider would.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key for one algorithm with its public half written as PEM.
type Key struct {
	Alg     string
	Kid     string
	Private crypto.Signer // nil for HMAC
	Secret  []byte        // HMAC only
	PEMPath string        // public key file ("" for HMAC)
}

// NewKey generates a key for alg (HS*, RS*, PS*, ES*, EdDSA) and writes its public half into dir.
func NewKey(tb testing.TB, dir, alg, kid string) *Key {
	tb.Helper()
	k := &Key{Alg: alg, Kid: kid}
	var err error
	switch alg[:2] {
	case "HS":
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		k.Secret = []byte(hex.EncodeToString(raw)) // 64 printable bytes: enough for HS512, safe in YAML
		return k
	case "RS", "PS":
		k.Private, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES":
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		k.Private, err = ecdsa.GenerateKey(curve, rand.Reader)
	case "Ed":
		_, k.Private, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("authtest: unknown algorithm %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	if err != nil {
		tb.Fatal(err)
	}
	k.PEMPath = filepath.Join(dir, fmt.Sprintf("%s-%s.pem", alg, kid))
	if err := os.WriteFile(k.PEMPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return k
}

// Sign returns a compact JWS of claims with this key (and its kid in the header when set).
func (k *Key) Sign(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	if k.Kid != "" {
		t.Header["kid"] = k.Kid
	}
	var key any = k.Private
	if k.Secret != nil {
		key = k.Secret
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// JWKS is a JWKS endpoint whose key set and availability a test changes while it runs.
type JWKS struct {
	srv   *httptest.Server
	mu    sync.Mutex
	body  []byte
	down  atomic.Bool
	Hits  atomic.Int64
	close sync.Once
}

// NewJWKS serves keys (public halves, with kid and alg) at URL().
func NewJWKS(tb testing.TB, keys ...*Key) *JWKS {
	tb.Helper()
	j := &JWKS{}
	j.Set(tb, keys...)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.Hits.Add(1)
		if j.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		j.mu.Lock()
		body := j.body
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(j.Close)
	return j
}

// Set replaces the published keys (a rotation).
func (j *JWKS) Set(tb testing.TB, keys ...*Key) {
	tb.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.Kid, ALG: jwkset.ALG(k.Alg), USE: jwkset.UseSig},
		})
		if err != nil {
			tb.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	body, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	j.mu.Lock()
	j.body = body
	j.mu.Unlock()
}

// SetDown makes the endpoint answer 503 (true) or serve the keys again (false).
func (j *JWKS) SetDown(down bool) { j.down.Store(down) }

// URL is the JWKS address.
func (j *JWKS) URL() string { return j.srv.URL + "/.well-known/jwks.json" }

// Close stops the server.
func (j *JWKS) Close() { j.close.Do(j.srv.Close) }
