package testenv

import (
	"context"
	"fmt"
)

// Fault injection for chaos tests: the servers can be killed (SIGKILL, no clean shutdown) and
// started again on the same port with the same data, so a client that keeps its configured
// endpoint sees an outage and a recovery, exactly like a crashed and restarted backend.
// Kill, Restart and the accessors must not be called concurrently with each other.

// Kill ends versitygw with SIGKILL and keeps its data directory; Restart brings it back.
func (s *S3) Kill() { s.proc.kill() }

// Restart starts versitygw again (killing it first if it still runs) on the same port, with the
// same credentials and data directory, and returns once it answers a signed ListBuckets.
func (s *S3) Restart(ctx context.Context) error {
	s.proc.kill()
	proc, err := restartProcess(s.proc)
	if err != nil {
		return fmt.Errorf("restart versitygw on %s: %w", s.Endpoint, err)
	}
	s.proc = proc
	if err := s.waitReady(ctx); err != nil {
		return fmt.Errorf("restart versitygw: %w", err)
	}
	return nil
}

// Kill ends redis-server with SIGKILL (persistence is off, so its data is gone); Restart brings
// an empty server back on the same address.
func (r *Redis) Kill() { r.proc.kill() }

// Restart starts redis-server again (killing it first if it still runs) on the same port and
// returns once it answers PING.
func (r *Redis) Restart(ctx context.Context) error {
	r.proc.kill()
	proc, err := restartProcess(r.proc)
	if err != nil {
		return fmt.Errorf("restart redis-server on %s: %w", r.addr, err)
	}
	r.proc = proc
	if err := r.waitReady(ctx); err != nil {
		return fmt.Errorf("restart redis-server: %w", err)
	}
	return nil
}

// restartProcess starts the same binary with the same arguments in the same directory as p.
func restartProcess(p *process) (*process, error) {
	return startProcess(p.cmd.Dir, p.cmd.Path, p.cmd.Args[1:]...)
}
