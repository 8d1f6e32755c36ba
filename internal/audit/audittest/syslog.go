// Package audittest provides a real RFC 5424 syslog receiver for tests of the audit sinks: it
// parses what it receives with a syslog parser library, so the format is checked independently.
package audittest

import (
	"bufio"
	"errors"
	"net"
	"sync"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// SyslogServer receives syslog over TCP (octet counting) or UDP and keeps every parsed message.
type SyslogServer struct {
	Addr    string
	network string
	mu      sync.Mutex
	msgs    []*rfc5424.SyslogMessage
	errs    []error
	ln      net.Listener
	pc      net.PacketConn
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// StartSyslog listens on addr ("127.0.0.1:0" for a free port) with network "tcp" or "udp".
func StartSyslog(network, addr string) (*SyslogServer, error) {
	s := &SyslogServer{network: network, conns: map[net.Conn]bool{}}
	return s, s.listen(addr)
}

func (s *SyslogServer) listen(addr string) error {
	if s.network == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		s.pc, s.Addr = pc, pc.LocalAddr().String()
		s.wg.Add(1)
		go s.serveUDP(pc)
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	s.wg.Add(1)
	go s.serveTCP(ln)
	return nil
}

func (s *SyslogServer) add(m syslog.Message, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	if sm, ok := m.(*rfc5424.SyslogMessage); ok {
		s.msgs = append(s.msgs, sm)
		return
	}
	s.errs = append(s.errs, errors.New("not an RFC 5424 message"))
}

func (s *SyslogServer) serveUDP(pc net.PacketConn) {
	defer s.wg.Done()
	p := rfc5424.NewParser()
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := p.Parse(append([]byte(nil), buf[:n]...))
		s.add(m, err)
	}
}

func (s *SyslogServer) serveTCP(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			p := octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) { s.add(r.Message, r.Error) }))
			p.Parse(bufio.NewReader(c))
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// Messages returns the parsed messages so far.
func (s *SyslogServer) Messages() []*rfc5424.SyslogMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rfc5424.SyslogMessage(nil), s.msgs...)
}

// Errors returns parse errors so far.
func (s *SyslogServer) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// Stop closes the listener and every connection (the server is "down"); Restart listens again
// on the same address.
func (s *SyslogServer) Stop() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Restart listens again on the address the server had.
func (s *SyslogServer) Restart() error { return s.listen(s.Addr) }
