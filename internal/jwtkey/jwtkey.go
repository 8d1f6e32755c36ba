// Package jwtkey turns configured JWT key material (an HMAC secret or a PEM public key) into a
// verification key pinned to one algorithm, so that config validation and the auth stage load
// keys the same way and a key can never verify a token of another algorithm family.
package jwtkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// Family groups algorithms that share a key type; a key verifies only its own family.
type Family int

// The key families, one per key type.
const (
	HMAC Family = iota + 1
	RSA
	ECDSA
	EdDSA
)

// String names the family as the config author knows it.
func (f Family) String() string {
	switch f {
	case HMAC:
		return "HMAC secret"
	case RSA:
		return "RSA public key"
	case ECDSA:
		return "ECDSA public key"
	case EdDSA:
		return "Ed25519 public key"
	}
	return "unknown"
}

// Algorithms lists every JWS algorithm the gateway verifies ("none" is never among them).
var Algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Asymmetric lists the algorithms a JWKS key may verify (a published key set never holds secrets).
var Asymmetric = Algorithms[3:]

// FamilyOf returns the key family of alg, false for an unknown algorithm.
func FamilyOf(alg string) (Family, bool) {
	switch alg {
	case "HS256", "HS384", "HS512":
		return HMAC, true
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return RSA, true
	case "ES256", "ES384", "ES512":
		return ECDSA, true
	case "EdDSA":
		return EdDSA, true
	}
	return 0, false
}

// Known reports whether alg is a supported algorithm name.
func Known(alg string) bool { return slices.Contains(Algorithms, alg) }

// minSecret is the RFC 7518 §3.2 floor: an HMAC key at least as long as the hash output.
var minSecret = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// minRSABits refuses keys that are too weak to trust.
const minRSABits = 2048

// Key is one verification key with the only algorithm it may verify.
type Key struct {
	ID  string // kid, "" when the config gives none
	Alg string
	// Material is what golang-jwt verifies with: []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Material any
}

// FromSecret builds an HMAC key for alg.
func FromSecret(id, alg, secret string) (Key, error) {
	if f, ok := FamilyOf(alg); !ok || f != HMAC {
		return Key{}, fmt.Errorf("algorithm %s does not use a shared secret", alg)
	}
	if n := minSecret[alg]; len(secret) < n {
		return Key{}, fmt.Errorf("the %s secret is %d bytes; at least %d are required (RFC 7518 §3.2)", alg, len(secret), n)
	}
	return Key{ID: id, Alg: alg, Material: []byte(secret)}, nil
}

// FromPEMFile reads a PEM public key (PKIX, PKCS#1 or a certificate) for alg; an empty alg
// picks the algorithm the key implies (RSA → RS256, P-256 → ES256, P-384 → ES384, P-521 → ES512,
// Ed25519 → EdDSA).
func FromPEMFile(id, alg, path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("read public key: %w", err)
	}
	return FromPEM(id, alg, data)
}

// FromPEM is FromPEMFile on bytes already read.
func FromPEM(id, alg string, data []byte) (Key, error) {
	material, err := parsePublic(data)
	if err != nil {
		return Key{}, err
	}
	implied := impliedAlg(material)
	if alg == "" {
		alg = implied
	}
	fam, ok := FamilyOf(alg)
	if !ok {
		return Key{}, fmt.Errorf("unknown algorithm %q", alg)
	}
	switch k := material.(type) {
	case *rsa.PublicKey:
		if fam != RSA {
			return Key{}, fmt.Errorf("the key is an RSA public key, which cannot verify %s", alg)
		}
		if k.N.BitLen() < minRSABits {
			return Key{}, fmt.Errorf("the RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if fam != ECDSA || alg != implied {
			return Key{}, fmt.Errorf("the key is an ECDSA %s public key, which verifies %s only, not %s", k.Curve.Params().Name, implied, alg)
		}
	case ed25519.PublicKey:
		if fam != EdDSA {
			return Key{}, fmt.Errorf("the key is an Ed25519 public key, which verifies EdDSA only, not %s", alg)
		}
	}
	return Key{ID: id, Alg: alg, Material: material}, nil
}

// parsePublic accepts the PEM forms golang-jwt accepts, trying each key type in turn.
func parsePublic(data []byte) (any, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(data); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(data); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(data); err == nil {
		if ek, ok := k.(ed25519.PublicKey); ok {
			return ek, nil
		}
	}
	return nil, errors.New("not a PEM-encoded RSA, ECDSA or Ed25519 public key (private keys are not accepted)")
}

// impliedAlg is the algorithm a key verifies by default.
func impliedAlg(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256"
		case elliptic.P384():
			return "ES384"
		case elliptic.P521():
			return "ES512"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}

// Fits reports whether key material of a JWKS entry may verify alg: the family must match, and
// an ECDSA key only its own curve's algorithm.
func Fits(material any, alg string) bool {
	fam, ok := FamilyOf(alg)
	if !ok {
		return false
	}
	switch material.(type) {
	case *rsa.PublicKey:
		return fam == RSA
	case *ecdsa.PublicKey:
		return impliedAlg(material) == alg
	case ed25519.PublicKey:
		return fam == EdDSA
	case []byte:
		return fam == HMAC
	}
	return false
}
