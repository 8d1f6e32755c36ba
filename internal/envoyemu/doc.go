// Package envoyemu emulates Envoy's HTTP data path (listener → HCM → ext_proc → router →
// cluster) from the xDS resources our control plane generates, so end-to-end tests and
// `make run` work on machines without an Envoy binary. It is faithful for what it implements and
// refuses everything else: every set field of every resource (including unpacked typed_config
// Anys) must be on an allow-list (check.go), otherwise New/Dial fail, and an ADS push is NACKed,
// with "envoyemu: unsupported field <full name> at <path>: implement it in the harness or stop
// generating it". Resources also pass PGV ValidateAll, recursively through Anys.
//
// Emulated (Envoy behaviour, source in /work/shared/reference/envoy.md):
//   - xDS: SotW ADS; CDS+LDS wildcard, RDS by the HCM's route_config_name; ACK with version and
//     nonce; NACK with error_detail keeping the last good config; reconnect with backoff and the
//     last accepted versions. Each complete config is compiled and swapped atomically.
//   - Listener: exactly one, one filter chain, one HCM (rds via ads{} only, codec AUTO, HTTP/1.1).
//   - HCM: max_request_headers_kb (default 60) and max_headers_count 100 → 431 with body
//     "Request Header Fields Too Large"; use_remote_address: XFF append with "," (loopback peers
//     get the node address: first non-loopback IPv4 of the host, as Envoy's local_info),
//     x-forwarded-proto overwritten to "http", x-envoy-external-address; all requests are
//     external (Envoy ≥1.33 default internal_address_config), so the edge header sanitising list
//     of cleanInternalHeaders is applied; x-request-id kept with preserve_external_request_id,
//     otherwise regenerated (UUIDv4); generate_request_id; hop-by-hop headers removed, TE reduced
//     to "trailers", invalid/multiple Referer removed, XFCC removed; :scheme from
//     x-forwarded-proto. Pseudo headers :authority, :path (raw request URI), :method, :scheme.
//   - ext_proc (request_header_mode SEND, everything else SKIP/NONE only): one Process stream per
//     request on one shared gRPC conn per cluster (authority = cluster name, unlimited receive
//     size); request_headers with lower-case keys, raw_value only, end_of_stream when there is no
//     body, protocol_config; message_timeout (default 200 ms) → 504
//     ext_proc_error_per-message_timeout_exceeded; gRPC error / stream cannot start →
//     status_on_error (default 500) with details ext_proc_error_gRPC_error_<code>{msg}; clean OK
//     close before an answer → continue unprocessed; spurious message → status_on_error;
//     failure_mode_allow turns those into pass-through (but not rejected mutations);
//     override_message_timeout ignored (max_message_timeout 0); ImmediateResponse as a local reply
//     (status missing or <200 → 200, headers via the mutation rules with failures only logged,
//     details); CommonResponse CONTINUE with default mutation rules (mutation.go) and
//     clear_route_cache re-matching; CONTINUE_AND_REPLACE (header mutation incl. :method, body
//     replaced, content-length removed → chunked upstream). The stream is cancelled at the end
//     (the server sees codes.Canceled).
//   - Router: virtual host by domain (exact, *suffix, prefix*, *), first matching route (prefix,
//     path, safe_regex on the path without query; header matchers string_match exact/prefix and
//     present_match, multiple values joined with ","); no route → 404 with empty body;
//     direct_response with response_headers_to_add; route.cluster proxied over HTTP/1.1 with a
//     streaming copy (64 KiB buffer, flushed per chunk); route.timeout (default 15 s, 0 disables)
//     → 504 "upstream request timeout" before headers, downstream reset after; connect failure →
//     503 "upstream connect error or disconnect/reset before headers. reset reason: ...";
//     x-envoy-expected-rq-timeout-ms upstream; x-envoy-upstream-service-time and server: envoy on
//     responses. Local replies: content-length, text/plain for non-empty bodies unless set.
//   - Access log: one envoy.access_loggers.http_grpc logger (log_name, envoy_grpc, V3): one
//     StreamAccessLogs stream, identifier (node, log_name) on its first message, an
//     HTTPAccessLogEntry per request with request id, method, scheme, authority, path, user agent,
//     referer, x-forwarded-for, response code and details, body bytes sent, timings, downstream
//     addresses, upstream cluster and route name; no request properties for a codec 431.
//     always_set_request_id_in_response copies x-request-id into every response.
//   - Clusters: STATIC (IP only) and STRICT_DNS with one endpoint, connect_timeout,
//     dns_lookup_family, HTTP/2 protocol options with connection_keepalive for gRPC clusters.
//
// Not emulated (accepted where noted, otherwise rejected by the checker):
//   - circuit_breakers are accepted but not enforced; GrpcService.timeout is accepted and ignored
//     (Envoy's ext_proc ignores it too); STRICT_DNS resolves per connection, not on a refresh
//     timer; load balancing (more than one endpoint is rejected); listener address changes after
//     start are logged, not rebound; HTTP/2 downstream or upstream for the router; TLS.
//   - Header order of the downstream request (Go's server loses it; entries are sorted by name)
//     and header-name case on the wire of responses (Go canonical case); Expect: 100-continue
//     handling; trailers; 1xx responses; request_headers_timeout, stream_idle_timeout,
//     idle_timeout; stats; access loggers other than one http_grpc logger (accesslog.go: entries
//     are sent as soon as queued instead of every buffer_flush_interval; a failed batch is retried
//     once on a new stream, then dropped).
//   - ext_proc: body/trailer/response phases, mode_override, attributes, metadata,
//     streamed_immediate_response (answered with 500 and an error log). Details strings other than
//     the timeout and gRPC ones are the harness's own (ext_proc_error_spurious_message,
//     ext_proc_error_rejected_header_mutation).
//   - Mutation details: Envoy reads raw_value; the harness also accepts a value-only entry.
//     append_action's zero value APPEND_IF_EXISTS_OR_ADD is indistinguishable from unset and
//     means overwrite, as Envoy's ext_proc treats an entry without `append`.
package envoyemu
