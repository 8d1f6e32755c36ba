package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/yatagarasu/yatagarasu/internal/auth/authtest"
	"github.com/yatagarasu/yatagarasu/internal/config"
)

// BenchmarkVerify measures, per algorithm, a cold verification (cache off: parse, signature,
// registered claims, one claim rule), a verified-token cache hit, and for RS256/ES256 the raw
// crypto verify of the same token (hash + signature check only), in the same run.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	now := time.Now()
	for _, alg := range []string{"HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA"} {
		k := authtest.NewKey(b, dir, alg, "k")
		tok := k.Sign(b, jwt.MapClaims{"sub": "alice", "role": "reader", "iss": "https://idp", "aud": "gw",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
		j := config.JWT{Keys: []config.JWTKey{{ID: "k", Algorithm: alg, Path: k.PEMPath, Secret: string(k.Secret)}},
			Issuer: "https://idp", Audience: "gw", Claims: []config.ClaimRule{{Claim: "role", Operator: "equals", Value: "reader"}}}
		ctx := context.Background()
		for _, mode := range []string{"cold", "cached"} {
			b.Run(alg+"/"+mode, func(b *testing.B) {
				jj := j
				jj.CacheSize = -1 // off
				if mode == "cached" {
					jj.CacheSize = 1000
				}
				v, _ := verifier(b, jj, &clock{})
				v.now = time.Now
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		if alg == "RS256" || alg == "ES256" {
			b.Run(alg+"/raw-crypto", func(b *testing.B) {
				i := strings.LastIndexByte(tok, '.')
				input, sig := tok[:i], mustB64(b, tok[i+1:])
				b.ReportAllocs()
				for b.Loop() {
					sum := sha256.Sum256([]byte(input))
					var ok bool
					switch pub := k.Private.Public().(type) {
					case *rsa.PublicKey:
						ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
					case *ecdsa.PublicKey:
						r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
						ok = ecdsa.Verify(pub, sum[:], r, s)
					}
					if !ok {
						b.Fatal("raw verify failed")
					}
				}
			})
		}
	}
}

func mustB64(b *testing.B, s string) []byte {
	out, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
