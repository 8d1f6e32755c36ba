package testenv

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// startupTimeout bounds installation and start-up (a cold `go install` of versitygw takes ~80 s).
const startupTimeout = 5 * time.Minute

func TestFreePortIsBindable(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d out of range", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d from FreePort is not bindable: %v", port, err)
	}
	l.Close()
}

func TestS3StartUseClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	srv, err := StartS3(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	if err := srv.CreateBucket(ctx, "env-test"); err != nil {
		t.Fatal(err)
	}
	body := []byte("hello from versitygw")
	if err := srv.PutObject(ctx, "env-test", "dir/hello.txt", body, "text/plain"); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("env-test"), Key: aws.String("dir/hello.txt")})
	if err != nil {
		t.Fatalf("get object: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(body) {
		t.Fatalf("body = %q, want %q", got, body)
	}
	if ct := aws.ToString(out.ContentType); ct != "text/plain" {
		t.Fatalf("content type = %q, want text/plain", ct)
	}

	// The server verifies signatures: a wrong secret must be refused.
	bad := *srv
	bad.SecretKey = "not-the-secret"
	if _, err := bad.newClient().ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Fatal("ListBuckets with a wrong secret key succeeded; versitygw is not verifying SigV4")
	}

	pid, dir := srv.Pid(), srv.Dir()
	srv.Close()
	assertGone(t, pid)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir %s still exists after Close (stat err %v)", dir, err)
	}
	srv.Close() // idempotent
}

func TestRedisStartUseClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	r, err := StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	if reply, err := Do(ctx, r.Addr(), "SET", "greeting", "hello world"); err != nil || reply != "+OK" {
		t.Fatalf("SET = %q, %v", reply, err)
	}
	if reply, err := Do(ctx, r.Addr(), "GET", "greeting"); err != nil || reply != "hello world" {
		t.Fatalf("GET = %q, %v", reply, err)
	}

	pid, addr := r.Pid(), r.Addr()
	r.Close()
	assertGone(t, pid)
	if err := Ping(ctx, addr); err == nil {
		t.Fatalf("redis still answers on %s after Close", addr)
	}
	r.Close()
}

// assertGone checks the process no longer exists (it was killed and reaped).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still exists after Close (kill -0 err %v)", pid, err)
	}
}
