package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Redis is a running redis-server with persistence off, for the L3 cache and distributed limits.
type Redis struct {
	addr string
	dir  string
	proc *process
}

// StartRedis starts redis-server on a free loopback port in a temporary directory and returns once
// it answers PING. When redis-server is missing and we run as root it is installed with apt-get.
// ctx bounds installation and start-up only.
func StartRedis(ctx context.Context) (*Redis, error) {
	bin, err := redisBinary(ctx)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := startRedisOnce(ctx, bin)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if !errors.Is(err, errStartRace) {
			break
		}
	}
	return nil, lastErr
}

func startRedisOnce(ctx context.Context, bin string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "yatagarasu-redis-")
	if err != nil {
		return nil, fmt.Errorf("create redis dir: %w", err)
	}
	proc, err := startProcess(dir, bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	r := &Redis{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, proc: proc}
	if err := r.waitReady(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Redis) waitReady(ctx context.Context) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var lastErr error
	for {
		if r.proc.exited() {
			return fmt.Errorf("start redis-server on %s: %w: %s", r.addr, errStartRace, r.proc.describe())
		}
		if lastErr = Ping(ctx, r.addr); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for redis-server on %s: %w (last error: %v); %s", r.addr, ctx.Err(), lastErr, r.proc.describe())
		case <-tick.C:
		}
	}
}

// Ping sends a RESP PING to addr over a fresh TCP connection and expects +PONG; it is how start-up
// knows Redis is ready without a Redis client library.
func Ping(ctx context.Context, addr string) error {
	reply, err := Do(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if reply != "+PONG" {
		return fmt.Errorf("redis PING on %s: unexpected reply %q", addr, reply)
	}
	return nil
}

// Do sends one command (as a RESP array of bulk strings) to addr on a fresh connection and returns
// the first reply line, plus the payload line for bulk replies ("$3" then "bar" → "bar").
// It exists for start-up checks and tests; product code uses a real client.
func Do(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dial redis %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", fmt.Errorf("write to redis %s: %w", addr, err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from redis %s: %w", addr, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") && line != "$-1" {
		payload, err := br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("read bulk reply from redis %s: %w", addr, err)
		}
		return strings.TrimRight(payload, "\r\n"), nil
	}
	return line, nil
}

// Addr returns host:port of the server.
func (r *Redis) Addr() string { return r.addr }

// Pid returns the redis-server process id, so tests can check Close really ended it.
func (r *Redis) Pid() int { return r.proc.pid() }

// Close kills redis-server's process group and removes its directory; safe to call twice.
func (r *Redis) Close() {
	if r == nil {
		return
	}
	r.proc.kill()
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// redisBinary finds redis-server, installing the Debian package when missing and running as root.
func redisBinary(ctx context.Context) (string, error) {
	dirs := []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"}
	if p, ok := lookBinary("redis-server", dirs...); ok {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("redis-server not found in PATH, /usr/bin or /usr/sbin; install the redis-server package")
	}
	var found string
	err := withFileLock("yatagarasu-redis-install.lock", func() error {
		if p, ok := lookBinary("redis-server", dirs...); ok {
			found = p
			return nil
		}
		install := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "redis-server")
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.CombinedOutput()
		}
		if _, err := install(); err != nil {
			if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
				return fmt.Errorf("apt-get update: %w\n%s", err, out)
			}
			if out, err := install(); err != nil {
				return fmt.Errorf("apt-get install redis-server: %w\n%s", err, out)
			}
		}
		p, ok := lookBinary("redis-server", dirs...)
		if !ok {
			return errors.New("apt-get installed redis-server but the binary is not in PATH, /usr/bin or /usr/sbin")
		}
		found = p
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("install redis-server: %w", err)
	}
	return found, nil
}
