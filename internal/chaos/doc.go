// Package chaos is the fault-injection suite (`make chaos`): the whole request path through the
// Envoy emulation harness against real servers on loopback (versitygw, redis-server, and for the
// crash tests extproc as a separate process), while the S3 server is killed, slowed, made to
// fail, Redis is killed, the cache disk fills up or turns read-only, extproc is SIGKILLed or
// SIGTERMed and the config is reloaded under load. Every test asserts what must hold whatever the
// fault: a client gets either the exact object or a clean JSON error, never a truncated or
// corrupted body, and service recovers once the fault is gone.
//
// This file's package holds the fault tools (proxies in front of S3); the tests are in *_test.go.
package chaos
