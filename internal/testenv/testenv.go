// Package testenv starts the real dependencies our tests talk to (an S3 server that verifies SigV4
// and Redis) as child processes on free loopback ports, so tests exercise real protocols instead of
// mocks. Start them once per package from TestMain and Close them before os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(run(m)) }
//
//	func run(m *testing.M) int {
//		srv, err := testenv.StartS3(ctx, testenv.Options{})
//		if err != nil { fmt.Fprintln(os.Stderr, err); return 1 }
//		defer srv.Close()
//		return m.Run()
//	}
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago; the caller binds it soon
// after, and start-up retries with a new port if another process won the race.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// outputLimit bounds how much of a child's output we keep for error messages.
const outputLimit = 64 << 10

// tailBuffer keeps the last outputLimit bytes written to it; it is safe for concurrent use
// because exec copies stdout and stderr from separate goroutines.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - outputLimit; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// process is one child started in its own process group so Close can kill it and anything it
// spawned.
type process struct {
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{}
	err    error // set before done is closed
}

func startProcess(dir, bin string, args ...string) (*process, error) {
	out := &tailBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, output: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the child has already stopped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the whole process group and waits for the child to be reaped.
func (p *process) kill() {
	if p == nil || p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// pid returns the child's process id (for tests that check it is gone).
func (p *process) pid() int { return p.cmd.Process.Pid }

// describe formats the child's exit state and output for an error message.
func (p *process) describe() string {
	state := "still running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Sprintf("%s; output:\n%s", state, p.output.String())
}

// withFileLock runs fn while holding an exclusive flock on a file in os.TempDir, so parallel test
// binaries (go test ./... runs packages concurrently) never install the same tool twice.
func withFileLock(name string, fn func() error) error {
	path := filepath.Join(os.TempDir(), name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	return fn()
}

// lookBinary finds an executable named name in PATH or in any of the extra directories.
func lookBinary(name string, extraDirs ...string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range extraDirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// errStartRace means the child exited during start-up, most likely because another process took
// the port between FreePort and bind; the caller retries with a new port.
var errStartRace = errors.New("process exited during start-up")

// pollEvery is how often start-up checks readiness.
const pollEvery = 50 * time.Millisecond
