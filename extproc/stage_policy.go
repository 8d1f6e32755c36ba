package extproc

import (
	"context"
	"net/http"
	"time"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
	"github.com/yatagarasu/yatagarasu/internal/ipfilter"
	"github.com/yatagarasu/yatagarasu/internal/policy"
)

// PolicyStage is pipeline step 8 (ARCHITECTURE.md §2): the bucket's wasm policies, in the
// order the bucket lists them. A deny ends the request with the guest's status, headers and
// body; header changes of allowing policies accumulate into the upstream request. It runs after
// the auth stages, so Subject and Claims are the verified ones.
type PolicyStage struct {
	Now func() time.Time // the time policies see; nil → time.Now
}

// Name implements Stage.
func (s *PolicyStage) Name() string { return "policy" }

// Run implements Stage.
func (s *PolicyStage) Run(ctx context.Context, x *Exchange) *Decision {
	names := x.Bucket.Policies
	if len(names) == 0 {
		return nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	req := &policy.Request{
		Method: x.Req.Method, URI: x.Req.RawPath, Headers: make([][2]string, 0, len(x.Req.Headers)),
		Bucket: x.Bucket.Name, Key: x.Key, Subject: x.Subject, Claims: x.Claims, Now: now(),
	}
	for _, h := range x.Req.Headers {
		req.Headers = append(req.Headers, [2]string{h.Name, h.Value})
	}
	trusted := 0
	if x.Snap.Config != nil {
		trusted = x.Snap.Config.Server.TrustedHops
	}
	if ip, ok := ipfilter.ClientIP(x.Req.Header("x-forwarded-for"), trusted); ok {
		req.ClientIP = ip.String()
	}
	for _, name := range names {
		p, ok := x.Snap.Policies.Get(name)
		if !ok {
			// Validation makes this impossible for a loaded config; fail closed all the same.
			return Reject(x, http.StatusServiceUnavailable, "policy_unavailable", "the request could not be authorized")
		}
		res, err := p.Evaluate(ctx, req)
		if err != nil {
			if p.FailOpen() {
				continue
			}
			return Reject(x, http.StatusServiceUnavailable, "policy_error", "the request could not be authorized")
		}
		if !res.Allow {
			return policyDeny(x, name, &res)
		}
		for _, h := range res.SetUpstream {
			x.Upstream.Set = append(x.Upstream.Set, h)
			req.Headers = append(req.Headers, h) // later policies see earlier additions
		}
		x.Upstream.Remove = append(x.Upstream.Remove, res.RemoveUpstream...)
	}
	return nil
}

// policyDeny turns a guest's deny into the client's answer. A body without a Content-Type is
// taken as the message of the gateway's JSON error body; otherwise the guest's body and headers
// go out as they are.
func policyDeny(x *Exchange, name string, res *policy.Result) *Decision {
	d := &Decision{Status: res.Status, Reason: "policy_denied:" + name}
	custom := false
	for _, h := range res.Headers {
		if h[0] == "content-type" {
			custom = true
		}
		if h[0] != "x-request-id" {
			d.Headers = append(d.Headers, h)
		}
	}
	if custom {
		d.Body = res.Body
	} else {
		msg := string(res.Body)
		if msg == "" {
			msg = http.StatusText(res.Status)
		}
		d.Body = httperr.New(res.Status, msg, x.Req.RequestID).JSON()
		d.Headers = append(d.Headers, [2]string{"content-type", httperr.ContentType})
	}
	d.Headers = append(d.Headers, [2]string{"cache-control", "no-store"}, [2]string{"x-request-id", x.Req.RequestID})
	return d
}
