package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Request is what a policy can read about one request (all through host functions).
type Request struct {
	Method   string
	URI      string      // :path as the client sent it, query included
	Headers  [][2]string // lower-case names; pseudo and x-yatagarasu-* headers are hidden from guests
	ClientIP string
	Bucket   string
	Key      string
	Subject  string
	Claims   map[string]any // validated JWT claims
	Now      time.Time      // the request's time, the same for every policy
}

// Result is a policy's decision.
type Result struct {
	Allow bool
	// Status, Headers and Body are the client's answer when Allow is false.
	Status  int
	Headers [][2]string
	Body    []byte
	// SetUpstream and RemoveUpstream are request header changes when Allow is true.
	SetUpstream    [][2]string
	RemoveUpstream []string
	FuelUsed       int64
	Duration       time.Duration
}

// Policy is one loaded version of a configured policy with its pool of instances.
type Policy struct {
	spec   Spec
	config string // spec.Config, converted once
	key    moduleKey
	mod    *module
	host   *Host
	m      *policyMetrics

	idle  chan *instance
	slots chan struct{} // one token per live instance

	mu     sync.RWMutex // held for reading by evaluations, for writing by close
	closed bool
}

// instance is one guest instance with its cached exports; it serves one call at a time.
type instance struct {
	mod    api.Module
	handle api.Function
	fuel   api.MutableGlobal
	stack  []uint64
	stderr *tailBuffer
	calls  int
}

// Name is the configured policy name.
func (p *Policy) Name() string { return p.spec.Name }

// Version is the short SHA-256 of the policy's .wasm, for logs and the CLI.
func (p *Policy) Version() string { return shortHash(p.key.hash) }

// FailOpen reports whether a failure of this policy lets the request through.
func (p *Policy) FailOpen() bool { return p.spec.FailOpen }

// Fuel is the policy's budget per request.
func (p *Policy) Fuel() int64 { return p.spec.Fuel }

// EvalError is a failed evaluation: its Kind (ErrBudget, ErrTrap, ...) plus the details that go
// to logs, never to the client.
type EvalError struct {
	Policy  string
	Version string
	Kind    error
	Detail  string // the wazero error with the wasm stack trace
	Stderr  string // the tail of what the guest wrote to stderr (a Go panic message)
}

func (e *EvalError) Error() string {
	s := fmt.Sprintf("policy %q (%s): %v", e.Policy, e.Version, e.Kind)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *EvalError) Unwrap() error { return e.Kind }

// Evaluate runs the guest's handle_request for r on a pooled instance. An error means the policy
// failed (trap, budget, pool timeout); the caller applies FailOpen. An instance whose call failed
// is never reused.
func (p *Policy) Evaluate(ctx context.Context, r *Request) (Result, error) {
	start := time.Now()
	res, err := p.evaluate(ctx, r)
	res.Duration = time.Since(start)
	p.m.observe(&res, err)
	if err != nil {
		var ee *EvalError
		if errors.As(err, &ee) {
			p.host.log.WarnContext(ctx, "policy failed", "policy", ee.Policy, "version", ee.Version,
				"kind", errKindForLabel[ee.Kind], "error", ee.Detail, "stderr", ee.Stderr, "fail_open", p.spec.FailOpen)
		}
	}
	return res, err
}

func (p *Policy) evaluate(ctx context.Context, r *Request) (Result, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return Result{}, p.fail(ErrRetired, "", nil)
	}
	in, err := p.get(ctx)
	if err != nil {
		return Result{}, err
	}
	st := &callState{req: r, config: p.config, log: p.host.log, policy: p.spec.Name}
	metered := in.fuel != nil
	if metered {
		in.fuel.Set(uint64(p.spec.Fuel))
	}
	in.stderr.Reset()
	callErr := in.handle.CallWithStack(context.WithValue(ctx, stateKey{}, st), in.stack)
	left := p.spec.Fuel
	if metered {
		left = int64(in.fuel.Get())
	}
	res := Result{FuelUsed: p.spec.Fuel - left}
	if callErr != nil {
		kind := ErrTrap
		var ae *abiError
		switch {
		case left < 0:
			kind, res.FuelUsed = ErrBudget, p.spec.Fuel
		case errors.As(callErr, &ae):
			kind = ErrABI
		}
		p.discard(ctx, in)
		return res, p.fail(kind, callErr.Error(), in)
	}
	next := uint32(in.stack[0])
	in.calls++
	if in.calls >= p.spec.RecycleAfter {
		p.discard(ctx, in)
	} else {
		p.idle <- in
	}
	if next != 0 {
		res.Allow = true
		res.SetUpstream, res.RemoveUpstream = st.upSet, st.upRemove
		return res, nil
	}
	res.Status = int(st.status)
	if res.Status == 0 {
		// next=0 without a status must not turn into an empty 200 in front of S3.
		res.Status = 403
	}
	res.Headers, res.Body = st.respHdrs, st.body
	return res, nil
}

func (p *Policy) fail(kind error, detail string, in *instance) error {
	e := &EvalError{Policy: p.spec.Name, Version: p.Version(), Kind: kind, Detail: detail}
	if in != nil {
		e.Stderr = in.stderr.String()
	}
	return e
}

// get takes an idle instance, creates one while the pool has room, or waits QueueTimeout.
func (p *Policy) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	select {
	case in := <-p.idle:
		return in, nil
	case p.slots <- struct{}{}:
		return p.created(ctx)
	default:
	}
	t := time.NewTimer(p.spec.QueueTimeout)
	defer t.Stop()
	select {
	case in := <-p.idle:
		return in, nil
	case p.slots <- struct{}{}:
		return p.created(ctx)
	case <-t.C:
		return nil, p.fail(ErrPoolTimeout, fmt.Sprintf("all %d instances busy for %s", p.spec.MaxInstances, p.spec.QueueTimeout), nil)
	case <-ctx.Done():
		return nil, p.fail(ErrPoolTimeout, ctx.Err().Error(), nil)
	}
}

// created instantiates into a slot already taken.
func (p *Policy) created(ctx context.Context) (*instance, error) {
	in, err := p.newInstance(ctx)
	if err != nil {
		<-p.slots
		return nil, p.fail(ErrInstantiate, err.Error(), nil)
	}
	return in, nil
}

func (p *Policy) newInstance(ctx context.Context) (*instance, error) {
	stderr := &tailBuffer{limit: 4 << 10}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize").
		WithStderr(stderr).WithStdout(stderr)
	start := time.Now()
	mod, err := p.mod.rt.InstantiateModule(ctx, p.mod.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate policy %q: %w (stderr: %s)", p.spec.Name, err, stderr.String())
	}
	p.m.instances.Inc()
	p.m.instantiateSeconds.Observe(time.Since(start).Seconds())
	fuel, _ := mod.ExportedGlobal(FuelExport).(api.MutableGlobal)
	if fuel == nil && !p.host.opts.unmetered {
		_ = mod.Close(ctx)
		return nil, fmt.Errorf("instantiate policy %q: fuel global missing", p.spec.Name)
	}
	return &instance{mod: mod, handle: mod.ExportedFunction("handle_request"), fuel: fuel,
		stack: make([]uint64, 1), stderr: stderr}, nil
}

// discard closes an instance and frees its slot.
func (p *Policy) discard(ctx context.Context, in *instance) {
	_ = in.mod.Close(ctx)
	p.m.instances.Dec()
	<-p.slots
}

// closeInstances waits for running evaluations, then closes every idle instance.
func (p *Policy) closeInstances(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for {
		select {
		case in := <-p.idle:
			p.discard(ctx, in)
		default:
			return
		}
	}
}

// tailBuffer keeps the last limit bytes a guest wrote to stdout/stderr, for failure reports.
type tailBuffer struct {
	limit int
	b     []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.limit; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Reset()         { t.b = t.b[:0] }
func (t *tailBuffer) String() string { return string(t.b) }
