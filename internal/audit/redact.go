package audit

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces a secret value.
const Redacted = "[REDACTED]"

// DefaultRedactHeaders are always redacted: credentials and session tokens.
var DefaultRedactHeaders = []string{"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-amz-security-token"}

// DefaultRedactQueryParams are always redacted: bearer tokens and presigned-URL signatures.
var DefaultRedactQueryParams = []string{"token", "access_token", "id_token", "jwt", "api_key", "apikey", "key_secret",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "sig"}

// jwtPattern finds JSON Web Tokens (header.payload[.signature], base64url, header starting with
// {"…) anywhere in a value, so a token in an unexpected place is still hidden.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(\.[A-Za-z0-9_-]*)?`)

// Redactor hides secrets in what a record carries: header values, query parameters and tokens.
type Redactor struct {
	headers map[string]bool
	params  map[string]bool
}

// NewRedactor returns a redactor for the defaults plus extra header and query parameter names
// (case-insensitive).
func NewRedactor(extraHeaders, extraParams []string) *Redactor {
	r := &Redactor{headers: map[string]bool{}, params: map[string]bool{}}
	for _, h := range append(append([]string(nil), DefaultRedactHeaders...), extraHeaders...) {
		r.headers[strings.ToLower(strings.TrimSpace(h))] = true
	}
	for _, p := range append(append([]string(nil), DefaultRedactQueryParams...), extraParams...) {
		r.params[strings.ToLower(strings.TrimSpace(p))] = true
	}
	return r
}

// Header returns the value to record for header name: the scheme of an Authorization value is
// kept ("Bearer [REDACTED]"), other sensitive values are replaced whole, and JWTs are removed
// from any value.
func (r *Redactor) Header(name, value string) string {
	if r.headers[strings.ToLower(name)] {
		if scheme, _, ok := strings.Cut(value, " "); ok && strings.HasSuffix(strings.ToLower(name), "authorization") && scheme != "" {
			return scheme + " " + Redacted
		}
		return Redacted
	}
	return redactTokens(value)
}

// Query returns rawQuery with sensitive parameter values replaced; the parameter order and the
// other values are kept as sent. A query that does not parse is replaced whole.
func (r *Redactor) Query(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	parts := strings.Split(rawQuery, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return Redacted
		}
		if hasValue && r.params[strings.ToLower(name)] {
			parts[i] = k + "=" + Redacted
			continue
		}
		parts[i] = redactTokens(p)
	}
	return strings.Join(parts, "&")
}

func redactTokens(v string) string {
	if !strings.Contains(v, "eyJ") {
		return v
	}
	return jwtPattern.ReplaceAllString(v, Redacted)
}

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }
