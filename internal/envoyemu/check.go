package envoyemu

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Registered so that typed_config Anys of the supported extensions can be unpacked.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// fieldRule says a field is implemented; when enums is non-nil only those enum numbers are.
type fieldRule struct {
	enums map[protoreflect.EnumNumber]string
}

// any accepts every value of the field.
var anyValue = fieldRule{}

// only restricts an enum field to the listed values (number → name, for error messages).
func only(values map[protoreflect.EnumNumber]string) fieldRule { return fieldRule{enums: values} }

// supportedFields is the allow-list of every field the harness implements, keyed by full
// field name. A set field that is not here makes the configuration unsupported. Read-only.
var supportedFields = map[protoreflect.FullName]fieldRule{
	// Listener
	"envoy.config.listener.v3.Listener.name":          anyValue,
	"envoy.config.listener.v3.Listener.address":       anyValue,
	"envoy.config.listener.v3.Listener.filter_chains": anyValue,
	"envoy.config.listener.v3.FilterChain.filters":    anyValue,
	"envoy.config.listener.v3.Filter.name":            anyValue,
	"envoy.config.listener.v3.Filter.typed_config":    anyValue,
	"envoy.config.core.v3.Address.socket_address":     anyValue,
	"envoy.config.core.v3.SocketAddress.address":      anyValue,
	"envoy.config.core.v3.SocketAddress.port_value":   anyValue,

	// HttpConnectionManager
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stat_prefix": anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.codec_type": only(map[protoreflect.EnumNumber]string{
		0: "AUTO",
	}),
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.rds":                          anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.use_remote_address":           anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.preserve_external_request_id": anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.generate_request_id":          anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.max_request_headers_kb":       anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_filters":                 anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds.route_config_name":                              anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds.config_source":                                  anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.name":                                    anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config":                            anyValue,
	"envoy.config.core.v3.ConfigSource.ads":                                                                          anyValue,
	"envoy.config.core.v3.ConfigSource.resource_api_version": only(map[protoreflect.EnumNumber]string{
		2: "V3",
	}),

	// HCM request ids and the gRPC access logger (accesslog.go)
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.always_set_request_id_in_response": anyValue,
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.access_log":                        anyValue,
	"envoy.config.accesslog.v3.AccessLog.name":                                                                            anyValue,
	"envoy.config.accesslog.v3.AccessLog.typed_config":                                                                    anyValue,
	"envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig.common_config":                                       anyValue,
	"envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig.log_name":                                          anyValue,
	"envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig.grpc_service":                                      anyValue,
	"envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig.transport_api_version": only(map[protoreflect.EnumNumber]string{
		2: "V3",
	}),

	// ExternalProcessor
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.grpc_service":       anyValue,
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.processing_mode":    anyValue,
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.message_timeout":    anyValue,
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.failure_mode_allow": anyValue,
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor.status_on_error":    anyValue,
	"envoy.config.core.v3.GrpcService.envoy_grpc":                                    anyValue,
	"envoy.config.core.v3.GrpcService.timeout":                                       anyValue,
	"envoy.config.core.v3.GrpcService.EnvoyGrpc.cluster_name":                        anyValue,
	"envoy.type.v3.HttpStatus.code":                                                  anyValue,
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.request_header_mode": only(map[protoreflect.EnumNumber]string{
		0: "DEFAULT", 1: "SEND",
	}),
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.response_header_mode": only(map[protoreflect.EnumNumber]string{
		2: "SKIP",
	}),
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.request_body_mode": only(map[protoreflect.EnumNumber]string{
		0: "NONE",
	}),
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.response_body_mode": only(map[protoreflect.EnumNumber]string{
		0: "NONE",
	}),
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.request_trailer_mode": only(map[protoreflect.EnumNumber]string{
		0: "DEFAULT", 2: "SKIP",
	}),
	"envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.response_trailer_mode": only(map[protoreflect.EnumNumber]string{
		0: "DEFAULT", 2: "SKIP",
	}),

	// RouteConfiguration
	"envoy.config.route.v3.RouteConfiguration.name":          anyValue,
	"envoy.config.route.v3.RouteConfiguration.virtual_hosts": anyValue,
	"envoy.config.route.v3.VirtualHost.name":                 anyValue,
	"envoy.config.route.v3.VirtualHost.domains":              anyValue,
	"envoy.config.route.v3.VirtualHost.routes":               anyValue,
	"envoy.config.route.v3.Route.name":                       anyValue,
	"envoy.config.route.v3.Route.match":                      anyValue,
	"envoy.config.route.v3.Route.route":                      anyValue,
	"envoy.config.route.v3.Route.direct_response":            anyValue,
	"envoy.config.route.v3.Route.response_headers_to_add":    anyValue,
	"envoy.config.route.v3.RouteMatch.prefix":                anyValue,
	"envoy.config.route.v3.RouteMatch.path":                  anyValue,
	"envoy.config.route.v3.RouteMatch.safe_regex":            anyValue,
	"envoy.config.route.v3.RouteMatch.headers":               anyValue,
	"envoy.type.matcher.v3.RegexMatcher.regex":               anyValue,
	"envoy.config.route.v3.HeaderMatcher.name":               anyValue,
	"envoy.config.route.v3.HeaderMatcher.string_match":       anyValue,
	"envoy.config.route.v3.HeaderMatcher.present_match":      anyValue,
	"envoy.type.matcher.v3.StringMatcher.exact":              anyValue,
	"envoy.type.matcher.v3.StringMatcher.prefix":             anyValue,
	"envoy.config.route.v3.RouteAction.cluster":              anyValue,
	"envoy.config.route.v3.RouteAction.timeout":              anyValue,
	"envoy.config.route.v3.DirectResponseAction.status":      anyValue,
	"envoy.config.route.v3.DirectResponseAction.body":        anyValue,
	"envoy.config.core.v3.DataSource.inline_string":          anyValue,
	"envoy.config.core.v3.DataSource.inline_bytes":           anyValue,
	"envoy.config.core.v3.HeaderValueOption.header":          anyValue,
	"envoy.config.core.v3.HeaderValueOption.append":          anyValue,
	"envoy.config.core.v3.HeaderValueOption.append_action":   anyValue,
	"envoy.config.core.v3.HeaderValue.key":                   anyValue,
	"envoy.config.core.v3.HeaderValue.value":                 anyValue,
	"envoy.config.core.v3.HeaderValue.raw_value":             anyValue,

	// Cluster
	"envoy.config.cluster.v3.Cluster.name": anyValue,
	"envoy.config.cluster.v3.Cluster.type": only(map[protoreflect.EnumNumber]string{
		0: "STATIC", 1: "STRICT_DNS",
	}),
	"envoy.config.cluster.v3.Cluster.connect_timeout":                  anyValue,
	"envoy.config.cluster.v3.Cluster.load_assignment":                  anyValue,
	"envoy.config.cluster.v3.Cluster.circuit_breakers":                 anyValue,
	"envoy.config.cluster.v3.Cluster.typed_extension_protocol_options": anyValue,
	"envoy.config.cluster.v3.Cluster.dns_lookup_family": only(map[protoreflect.EnumNumber]string{
		0: "AUTO", 1: "V4_ONLY", 2: "V6_ONLY", 3: "V4_PREFERRED", 4: "ALL",
	}),
	"envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name":                                      anyValue,
	"envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints":                                         anyValue,
	"envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints":                                        anyValue,
	"envoy.config.endpoint.v3.LbEndpoint.endpoint":                                                     anyValue,
	"envoy.config.endpoint.v3.Endpoint.address":                                                        anyValue,
	"envoy.config.cluster.v3.CircuitBreakers.thresholds":                                               anyValue,
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_connections":                               anyValue,
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_pending_requests":                          anyValue,
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_requests":                                  anyValue,
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_retries":                                   anyValue,
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config":                      anyValue,
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http2_protocol_options": anyValue,
	"envoy.config.core.v3.Http2ProtocolOptions.connection_keepalive":                                   anyValue,
	"envoy.config.core.v3.KeepaliveSettings.interval":                                                  anyValue,
	"envoy.config.core.v3.KeepaliveSettings.timeout":                                                   anyValue,
}

// supportedAnyTypes lists the typed_config / typed_extension_protocol_options message types the
// harness implements. Read-only.
var supportedAnyTypes = map[protoreflect.FullName]bool{
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": true,
	"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor":                       true,
	"envoy.extensions.filters.http.router.v3.Router":                                    true,
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                            true,
	"envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig":                   true,
}

// UnsupportedError reports configuration the harness does not emulate. It exists so callers (and
// the ADS client's NACK) can tell "fix the generator or the harness" apart from other failures.
type UnsupportedError struct {
	Field string // full proto field or type name
	Path  string // where in the resource it was found
	What  string // "field", "value", "extension type" or a free-form reason
}

// Error implements error with the wording the project agreed on.
func (e *UnsupportedError) Error() string {
	switch e.What {
	case "field":
		return fmt.Sprintf("envoyemu: unsupported field %s at %s: implement it in the harness or stop generating it", e.Field, e.Path)
	case "extension type":
		return fmt.Sprintf("envoyemu: unsupported extension type %s at %s: implement it in the harness or stop generating it", e.Field, e.Path)
	case "value":
		return fmt.Sprintf("envoyemu: unsupported value of %s at %s: implement it in the harness or stop generating it", e.Field, e.Path)
	default:
		return fmt.Sprintf("envoyemu: unsupported %s (%s) at %s: implement it in the harness or stop generating it", e.What, e.Field, e.Path)
	}
}

// validator is implemented by every go-control-plane message (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// checkResource walks msg and returns an error for the first set field, enum value or Any type
// the harness does not implement. It also runs PGV ValidateAll on the resource and on every
// unpacked Any, because the generated validators do not descend into Anys and Envoy would NACK
// such a resource.
func checkResource(msg proto.Message, path string) error {
	if v, ok := msg.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("envoyemu: %s fails Envoy's proto validation: %w", path, err)
		}
	}
	return checkMessage(msg.ProtoReflect(), path)
}

func checkMessage(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		err = checkField(fd, v, path+"."+string(fd.Name()))
		return err == nil
	})
	return err
}

func checkField(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	rule, ok := supportedFields[fd.FullName()]
	if !ok {
		return &UnsupportedError{Field: string(fd.FullName()), Path: path, What: "field"}
	}
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := checkValue(fd, rule, l.Get(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case fd.IsMap():
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			err = checkValue(fd.MapValue(), rule, mv, fmt.Sprintf("%s[%q]", path, k.String()))
			return err == nil
		})
		return err
	default:
		return checkValue(fd, rule, v, path)
	}
}

func checkValue(fd protoreflect.FieldDescriptor, rule fieldRule, v protoreflect.Value, path string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if rule.enums != nil {
			if _, ok := rule.enums[v.Enum()]; !ok {
				name := fmt.Sprint(v.Enum())
				if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
					name = string(ev.Name())
				}
				return &UnsupportedError{Field: string(fd.FullName()) + "=" + name, Path: path, What: "value"}
			}
		}
		return nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		msg := v.Message()
		full := msg.Descriptor().FullName()
		if full == "google.protobuf.Any" {
			a, ok := msg.Interface().(*anypb.Any)
			if !ok {
				return fmt.Errorf("envoyemu: %s: Any of unexpected Go type %T", path, msg.Interface())
			}
			inner, err := a.UnmarshalNew()
			if err != nil {
				return &UnsupportedError{Field: a.GetTypeUrl(), Path: path, What: "extension type"}
			}
			innerName := inner.ProtoReflect().Descriptor().FullName()
			if !supportedAnyTypes[innerName] {
				return &UnsupportedError{Field: string(innerName), Path: path, What: "extension type"}
			}
			return checkResource(inner, fmt.Sprintf("%s<%s>", path, innerName))
		}
		if msg.Descriptor().ParentFile().Package() == "google.protobuf" {
			return nil // well-known types (Duration, BoolValue, UInt32Value...) are leaves
		}
		return checkMessage(msg, path)
	default:
		return nil
	}
}
