package benchutil

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// Field 2 with spaces and parentheses, utime=250 stime=50 ticks → 3 s.
	line := "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 10"
	got, err := parseStat(line)
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStat = %v, %v", got, err)
	}
	if _, err := parseStat("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestProcCPUOfSelfGrows(t *testing.T) {
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for {
		for i := range 1_000_000 {
			x ^= i
		}
		now, err := procCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow after busy work (x=%d)", x)
		}
	}
}
