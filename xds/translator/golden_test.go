package translator_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/yatagarasu/yatagarasu/internal/config"
	"github.com/yatagarasu/yatagarasu/xds/translator"
	"github.com/yatagarasu/yatagarasu/xds/validate"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current translator")

// noEnv keeps golden inputs independent of the machine's environment.
func noEnv(string) (string, bool) { return "", false }

func loadCase(t *testing.T, path string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, data, noEnv)
	if err != nil {
		t.Fatalf("config.Parse(%s): %v", path, err)
	}
	return cfg
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 3 {
		t.Fatalf("expected at least 3 golden cases, found %d", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			res, err := translator.Translate(loadCase(t, in))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			kinds := []struct {
				kind string
				msgs []proto.Message
			}{
				{"listeners", toMsgs(res.Listeners)},
				{"routes", toMsgs(res.Routes)},
				{"clusters", toMsgs(res.Clusters)},
			}
			var parsedAll []proto.Message
			for _, k := range kinds {
				got, err := translator.MarshalYAML(k.msgs...)
				if err != nil {
					t.Fatalf("MarshalYAML %s: %v", k.kind, err)
				}
				out := filepath.Join("testdata", "out", name+"."+k.kind+".yaml")
				if *update {
					if err := os.WriteFile(out, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(out)
				if err != nil {
					t.Fatalf("%v (run go test ./xds/translator -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the translator output (run go test ./xds/translator -update and review the diff)\n--- got ---\n%s", out, got)
				}
				// The golden file must parse back strictly into exactly the generated protos.
				parsed, err := translator.ParseYAML(want)
				if err != nil {
					t.Fatalf("ParseYAML %s: %v", out, err)
				}
				if len(parsed) != len(k.msgs) {
					t.Fatalf("%s: parsed %d resources, want %d", out, len(parsed), len(k.msgs))
				}
				for i := range parsed {
					if !proto.Equal(parsed[i], k.msgs[i]) {
						t.Errorf("%s document %d does not round-trip", out, i)
					}
					if err := validate.Deep(parsed[i]); err != nil {
						t.Errorf("%s document %d: Deep: %v", out, i, err)
					}
				}
				parsedAll = append(parsedAll, parsed...)
			}
			if err := validate.Lint(parsedAll...); err != nil {
				t.Errorf("Lint of parsed golden output: %v", err)
			}
		})
	}
}

func TestParseYAMLRejectsUnknownFields(t *testing.T) {
	doc := []byte("---\n\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: c\nconect_timeout: 1s\n")
	if _, err := translator.ParseYAML(doc); err == nil || !strings.Contains(err.Error(), "conect_timeout") {
		t.Fatalf("ParseYAML with a misspelled field = %v, want an error naming it", err)
	}
	doc = []byte("---\n\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: c\nconnect_timeout: 1s\n")
	msgs, err := translator.ParseYAML(doc)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseYAML(valid) = %v, %v", msgs, err)
	}
}

func toMsgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
