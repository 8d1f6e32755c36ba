package auth

import (
	"net/url"
	"strings"

	"github.com/yatagarasu/yatagarasu/internal/config"
)

// Source is one place a token may be: the Authorization bearer header, a custom header (with an
// optional prefix) or a query parameter.
type Source struct {
	Kind   string // bearer | header | query
	Name   string // header name (lower case) or query parameter name
	Prefix string // header only
}

// Sources converts the configured token sources.
func Sources(cfg []config.TokenSource) []Source {
	out := make([]Source, 0, len(cfg))
	for _, s := range cfg {
		src := Source{Kind: s.Kind(), Name: s.Name, Prefix: s.Prefix}
		switch src.Kind {
		case "bearer":
			src.Name = "authorization"
		case "header":
			src.Name = strings.ToLower(src.Name)
		}
		out = append(out, src)
	}
	return out
}

// HeaderReader reads one request header by lower-case name ("" when absent).
type HeaderReader interface {
	Header(name string) string
}

// Extract returns the first token found, trying sources in order, and the index of the source it
// came from. ok is false when no source holds a token (the 401 case). rawPath is the request
// target with its query.
func Extract(sources []Source, h HeaderReader, rawPath string) (token string, src int, ok bool) {
	for i, s := range sources {
		switch s.Kind {
		case "bearer":
			token = bearer(h.Header("authorization"))
		case "header":
			token = strings.TrimSpace(h.Header(s.Name))
			if s.Prefix != "" {
				rest, found := strings.CutPrefix(token, s.Prefix)
				token = ""
				if found {
					token = strings.TrimSpace(rest)
				}
			}
		case "query":
			token = queryParam(rawPath, s.Name)
		}
		if token != "" {
			return token, i, true
		}
	}
	return "", -1, false
}

// bearer returns the credentials of an RFC 6750 "Bearer <token>" value; the scheme is
// case-insensitive.
func bearer(v string) string {
	v = strings.TrimSpace(v)
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(v[len(scheme):])
}

// queryParam returns the first value of name in rawPath's query, unescaped ("" when absent or
// badly escaped).
func queryParam(rawPath, name string) string {
	_, q, found := strings.Cut(rawPath, "?")
	if !found {
		return ""
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(uv)
	}
	return ""
}

// StripQuery returns rawPath without every occurrence of the query parameter name, keeping the
// other parameters byte for byte; ok is false when nothing was removed.
func StripQuery(rawPath, name string) (string, bool) {
	path, q, found := strings.Cut(rawPath, "?")
	if !found {
		return rawPath, false
	}
	var kept []string
	removed := false
	for _, pair := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(pair, "=")
		if k == name {
			removed = true
			continue
		}
		if uk, err := url.QueryUnescape(k); err == nil && uk == name {
			removed = true
			continue
		}
		kept = append(kept, pair)
	}
	if !removed {
		return rawPath, false
	}
	if len(kept) == 0 {
		return path, true
	}
	return path + "?" + strings.Join(kept, "&"), true
}

// Credentials lists where the request carries credentials for these sources, so that every one of
// them is removed before the request goes upstream: header names to remove and the path without
// the query parameters (pathChanged false when no query source was present).
func Credentials(sources []Source, h HeaderReader, rawPath string) (headers []string, path string, pathChanged bool) {
	path = rawPath
	for _, s := range sources {
		switch s.Kind {
		case "bearer", "header":
			if h.Header(s.Name) != "" {
				headers = append(headers, s.Name)
			}
		case "query":
			if p, ok := StripQuery(path, s.Name); ok {
				path, pathChanged = p, true
			}
		}
	}
	return headers, path, pathChanged
}
