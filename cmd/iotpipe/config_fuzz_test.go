package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// loadFile loads a config file of content, with no flags.
func loadFile(t *testing.T, content string) (config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, []string{"--config", file})
}

// A config file's errors name the key (and its line) and what it wants;
// no value is changed to fit (1.5 bytes was taken as 1).
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       string // in the error; "" for none
	}{
		{"empty", "", ""},
		{"comments only", "# nothing\n", ""},
		{"known keys", "partitions: 3\nretention: 1h\ndev: true\ndata_dir: d\nretention_bytes: 0x100\nmax_event_skew: -1s\n", ""},
		{"text for a number", "partitions: abc\n", `line 1: partitions "abc": want an integer`},
		{"fraction for a number", "retention_bytes: 1.5\n", `line 1: retention_bytes "1.5": want an integer`},
		{"number too large", "kafka_port: 99999999999999999999\n", `kafka_port "99999999999999999999": want an integer`},
		{"number for a duration", "dev: true\nretention: 5\n", `line 2: retention "5": want a duration such as 30s`},
		{"text for a duration", "drain_timeout: soon\n", `drain_timeout "soon": want a duration such as 30s`},
		{"text for a bool", "dev: maybe\n", `dev "maybe": want true or false`},
		{"list for a number", "partitions: [1]\n", "line 1: partitions: want an integer, not a list"},
		{"map for a string", "data_dir: {a: 1}\n", "line 1: data_dir: want a string, not a map"},
		{"null", "data_dir: ~\n", "line 1: data_dir: want a string, not null"},
		{"unknown key", "partitions: 2\nno_such_key: 1\n", `line 2: unknown key "no_such_key"`},
		{"key twice", "partitions: 1\npartitions: 2\n", `line 2: key "partitions" given twice`},
		{"not a mapping", "- a\n", "want keys and values"},
		{"a mapping key", "? [a]\n: 1\n", "line 1: a key must be a name"},
		{"not YAML", ": x\n", "yaml: did not find expected key"},
		{"alias of a list", "retention: &l [1]\nkafka_port: *l\n", "line 1: retention: want a duration such as 30s, not a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadFile(t, tt.file)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want it to say %q", err, tt.want)
			}
		})
	}
	c, err := loadFile(t, "partitions: &p 3\nretention: 1h30m\ndev: true\nretention_bytes: 0x100\nmax_event_skew: -1s\nnode: 7\nmqtt_max_connections: *p\n")
	if err != nil || c.Partitions != 3 || c.Retention != 90*time.Minute || !c.Dev || c.RetentionBytes != 256 || c.MaxEventSkew != -time.Second || c.Node != "7" || c.MQTTMaxConns != 3 {
		t.Fatalf("%+v %v", c, err)
	}
}

// FuzzConfig: no config file makes the parser panic; for a file of keys
// and values, an error names one of its keys (or says a key is no name),
// a file it accepts means what yaml.v3 reads from it, and validate's
// errors then name one of its keys too.
func FuzzConfig(f *testing.F) {
	example, err := os.ReadFile("../../deploy/iotpipe.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{"", "partitions: abc\n", "retention_bytes: 1.5\n", "retention: 5\n", "dev: maybe\n",
		"partitions: [1]\n", "data_dir: {a: 1}\n", "no_such_key: 1\n", "- a\n", "partitions: 1\npartitions: 2\n",
		"&a [*a]\n", ": x\n", "partitions: 0\n", "log_level: loud\n", "kafka_port: 0x10\n", "retention: 1h\n", "node: 7\n",
		"partitions: &p 2\nkafka_port: *p\n", "? [a]\n: 1\n", "mqtt_addr: !!binary aGk=\n", "partitions: !!str 3\n",
		"base: &b {partitions: 2}\n<<: *b\n", "\"\": 1\n", "dev: yes\n", "data_dir: ~\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := defaultConfig()
		err := decodeConfigFile(b, &c)
		keys := fileKeys(b)
		if err != nil {
			if len(keys) > 0 && !namesKey(err.Error(), keys) && !strings.Contains(err.Error(), "a key must be a name") {
				t.Fatalf("error %q names no key of %q", err, b)
			}
			return
		}
		ref := defaultConfig()
		if err := yaml.Unmarshal(b, &ref); err != nil {
			t.Fatalf("accepted %q, which yaml.v3 does not read into a config: %v", b, err)
		}
		if c != ref {
			t.Fatalf("%q read as\n%+v\nyaml.v3 reads\n%+v", b, c, ref)
		}
		if err := c.validate(); err != nil && !namesKey(err.Error(), keys) {
			t.Fatalf("validate: %q names no key of %q", err, b)
		}
	})
}

// fileKeys are the keys of a YAML mapping as written (nil for anything
// else).
func fileKeys(b []byte) []string {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	var keys []string
	m := doc.Content[0]
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode {
			keys = append(keys, m.Content[i].Value)
		}
	}
	return keys
}

// namesKey reports whether msg names one of keys, as it is or quoted.
func namesKey(msg string, keys []string) bool {
	for _, k := range keys {
		if strings.Contains(msg, strconv.Quote(k)) || (k != "" && strings.Contains(msg, k)) {
			return true
		}
	}
	return false
}
