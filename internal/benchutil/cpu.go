// Package benchutil reports CPU time per operation in benchmarks. On a shared 2-core machine the
// wall-clock time of a benchmark swings with other tenants' load; the CPU time our own processes
// spend per operation barely does, and on a saturated machine throughput ratios follow it.
package benchutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ticksPerSecond is Linux's USER_HZ, the unit of utime/stime in /proc/<pid>/stat.
const ticksPerSecond = 100

// ReportCPU starts measuring the CPU time of this process and of the extra processes pids
// (e.g. the S3 server a benchmark drives); the returned func, deferred, reports it as
// "cpu-ns/op" for the b.N operations run in between.
func ReportCPU(b *testing.B, pids ...int) func() {
	b.Helper()
	start := cpuTime(b, pids)
	return func() {
		if b.N == 0 {
			return
		}
		used := cpuTime(b, pids) - start
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime(b *testing.B, pids []int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range pids {
		t, err := procCPU(pid)
		if err != nil {
			b.Fatalf("cpu time of pid %d: %v", pid, err)
		}
		total += t
	}
	return total
}

// procCPU reads utime+stime of another process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(raw))
}

// parseStat extracts utime and stime (fields 14 and 15) from a /proc/<pid>/stat line; the
// command name (field 2) may contain spaces, so fields are counted after its closing ')'.
func parseStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the name", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}
