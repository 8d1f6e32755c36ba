package config

import "time"

// Backend defaults as Load fills them, for the expected configs in config_test.go.
var (
	defaultRetry   = Retry{MaxAttempts: 3, InitialBackoffMs: 100, MaxBackoffMs: 1000}
	defaultBreaker = CircuitBreaker{FailureThreshold: 5, SuccessThreshold: 2, TimeoutSeconds: Seconds(60 * time.Second), HalfOpenMaxRequests: 3}
)
