package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// countingServer answers every GET with 200 and counts requests per path and with the bypass header.
type countingServer struct {
	*httptest.Server
	mu         sync.Mutex
	a, b, bypp int
}

func newCountingServer(t *testing.T) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		switch r.URL.Path {
		case "/a":
			s.a++
		case "/b":
			s.b++
		}
		if r.Header.Get(bypassHeader) == "1" {
			s.bypp++
		}
		s.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) counts() (a, b, bypass int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a, s.b, s.bypp
}
