package extproc

import (
	"context"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/origin"
)

// auditFlushTimeout bounds how long Shutdown waits for the audit sinks to take the records
// still queued; what they cannot take stays in the spool for the next start (docs/AUDIT.md).
const auditFlushTimeout = 5 * time.Second

// trustedHops is server.trusted_hops of the current snapshot (X-Forwarded-For entries added by
// proxies in front of Envoy), for the client IP in audit records.
func (s *Service) trustedHops() int {
	if snap := s.Store.Load(); snap != nil {
		return snap.Config.Server.TrustedHops
	}
	return 0
}

// observeOrigin gives the origin handler the service's tracing, metrics and audit log.
func (s *Service) observeOrigin(h *origin.Handler) *origin.Handler {
	h.SetObserver(s.obs.Origin())
	return h
}

// closeObservability flushes the audit log and the trace exporter once no request runs any
// more; it gets its own deadline because the caller's may already be spent on draining.
func (s *Service) closeObservability(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditFlushTimeout)
	defer cancel()
	return s.obs.Close(ctx)
}

// Observability returns the service's tracing, audit and metrics wiring (tests read it).
func (s *Service) Observability() *Observability { return s.obs }
