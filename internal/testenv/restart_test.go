package testenv

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestKillAndRestartKeepPortAndData kills both servers and restarts them: the S3 server comes
// back on the same endpoint with its objects, Redis on the same address (empty by design).
func TestKillAndRestartKeepPortAndData(t *testing.T) {
	ctx := t.Context()
	s, err := StartS3(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateBucket(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutObject(ctx, "keep", "k", []byte("v"), ""); err != nil {
		t.Fatal(err)
	}
	oldPid := s.Pid()
	s.Kill()
	if err := s.PutObject(ctx, "keep", "k2", []byte("v"), ""); err == nil {
		t.Fatal("a killed S3 server accepted a write")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Pid() == oldPid {
		t.Fatal("restart kept the old process")
	}
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("keep"), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("object lost across restart: %v", err)
	}
	_ = out.Body.Close()

	r, err := StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Kill()
	if err := Ping(ctx, r.Addr()); err == nil {
		t.Fatal("a killed redis answered PING")
	}
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Ping(ctx, r.Addr()); err != nil {
		t.Fatal(err)
	}
}
