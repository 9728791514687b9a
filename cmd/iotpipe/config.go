package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
)

// config is iotpipe's configuration. Precedence, lowest first: built-in
// defaults, the config file (--config, or $IOTPIPE_CONFIG), environment
// variables (IOTPIPE_<NAME>, e.g. IOTPIPE_DATA_DIR), then flags.
type config struct {
	DataDir        string        `yaml:"data_dir" flag:"data-dir" help:"directory for the embedded log, state and ClickHouse data"`
	Dev            bool          `yaml:"dev" flag:"dev" help:"allow anonymous devices (development only: anyone can connect and publish)"`
	MQTTAddr       string        `yaml:"mqtt_addr" flag:"mqtt-addr" help:"plain MQTT TCP listen address, opened only with --dev or --mqtt-token-auth (\"\": none)"`
	MQTTSAddr      string        `yaml:"mqtts_addr" flag:"mqtts-addr" help:"MQTT over TLS listen address: client certificates or tokens (\"\": none)"`
	WSAddr         string        `yaml:"ws_addr" flag:"ws-addr" help:"MQTT over WebSocket listen address, plain: opened only with --dev or --mqtt-token-auth (\"\": none)"`
	WSSAddr        string        `yaml:"wss_addr" flag:"wss-addr" help:"MQTT over WebSocket over TLS listen address: client certificates or tokens (\"\": none)"`
	TLSCert        string        `yaml:"tls_cert" flag:"tls-cert" help:"PEM certificate (chain) of the TLS listeners, MQTT and --http-tls (default: one iotpipe's CA issues, kept under <data-dir>/pki)"`
	TLSKey         string        `yaml:"tls_key" flag:"tls-key" help:"PEM private key of --tls-cert"`
	TLSNames       string        `yaml:"tls_names" flag:"tls-names" help:"extra DNS names or IPs, comma-separated, of the server certificate iotpipe's CA issues (beside localhost, 127.0.0.1, ::1 and the host name)"`
	MQTTTokenAuth  bool          `yaml:"mqtt_token_auth" flag:"mqtt-token-auth" help:"open the plain MQTT and WebSocket listeners to token authentication (the token, the MQTT password, crosses the network in clear)"`
	AuthorizerURL  string        `yaml:"authorizer_url" flag:"authorizer-url" help:"custom authorizer: HTTP endpoint deciding tokens that are not iotpipe tokens (AWS's request and answer shape)"`
	AuthTimeout    time.Duration `yaml:"authorizer_timeout" flag:"authorizer-timeout" help:"longest a custom authorizer call may take; a timeout refuses the connection"`
	HTTPAddr       string        `yaml:"http_addr" flag:"http-addr" help:"HTTP API, /metrics and dashboard listen address (every request but /healthz and /readyz needs a bearer token; :8080 for every interface)"`
	HTTPTLS        bool          `yaml:"http_tls" flag:"http-tls" help:"serve the HTTP API over TLS with the TLS listeners' certificate (--tls-cert, or iotpipe's server certificate <data-dir>/pki/server.pem, signed by its CA)"`
	BootstrapToken string        `yaml:"bootstrap_token" flag:"bootstrap-token" help:"on the first start, the admin API token's secret (iotp_ and 43 base64url characters) instead of a random one: for automated deployments"`
	Kafka          string        `yaml:"kafka" flag:"kafka" help:"external Kafka/Redpanda seed brokers host:port,... (empty: the embedded log)"`
	KafkaCreds     string        `yaml:"kafka_credentials" flag:"kafka-credentials" help:"JSON file {\"mechanism\",\"user\",\"password\"} iotpipe authenticates to --kafka with (default: <data-dir>/kafka/credentials.json when it exists: the embedded log's own)"`
	KafkaPort      int           `yaml:"kafka_port" flag:"kafka-port" help:"TCP port of the embedded log on 127.0.0.1 (kcat -b 127.0.0.1:PORT)"`
	SyncWrites     bool          `yaml:"sync_writes" flag:"sync-writes" help:"embedded log: fsync every batch before acknowledging (survives OS crashes, slower)"`
	Partitions     int           `yaml:"partitions" flag:"partitions" help:"partitions of topics iotpipe creates"`
	Retention      time.Duration `yaml:"retention" flag:"retention" help:"how long the event topics keep records"`
	RetentionBytes int64         `yaml:"retention_bytes" flag:"retention-bytes" help:"bytes kept per partition of the event topics"`
	MaxInFlight    int           `yaml:"max_inflight" flag:"max-inflight" help:"publishes one MQTT connection may have on their way to the log"`
	MaxPayload     int           `yaml:"max_payload" flag:"max-payload" help:"largest accepted payload in bytes"`
	MQTTConnect    time.Duration `yaml:"mqtt_connect_timeout" flag:"mqtt-connect-timeout" help:"time a new MQTT connection has to send its CONNECT"`
	MQTTMaxConns   int           `yaml:"mqtt_max_connections" flag:"mqtt-max-connections" help:"open MQTT connections allowed, more are refused (0: the open-files limit less a tenth; -1: no cap)"`
	MQTTSession    time.Duration `yaml:"mqtt_session_expiry" flag:"mqtt-session-expiry" help:"how long a persistent MQTT session outlives its connection (3.1.1; the most an MQTT 5 client gets; 1s to 168h)"`
	MQTTQueue      int           `yaml:"mqtt_client_queue" flag:"mqtt-client-queue" help:"packets that may wait to be written to one MQTT client, more are dropped"`
	MQTTMaxQueued  int           `yaml:"mqtt_max_queued" flag:"mqtt-max-queued" help:"QoS 1/2 messages one MQTT session may hold unacknowledged or queued while offline"`
	Node           string        `yaml:"node" flag:"node" help:"name of this ingest node (its outbound consumer group)"`
	ClickHouse     string        `yaml:"clickhouse" flag:"clickhouse" help:"ClickHouse DSN clickhouse://host:9000/db (empty: the embedded server; \"off\": no ClickHouse sink)"`
	CHQueryDSN     string        `yaml:"clickhouse_query_dsn" flag:"clickhouse-query-dsn" help:"DSN of a read-only ClickHouse user for POST /api/sql on the --clickhouse server (empty: iotpipe creates one with the --clickhouse user, or /api/sql is disabled)"`
	CHTCPPort      int           `yaml:"clickhouse_tcp_port" flag:"clickhouse-tcp-port" help:"embedded ClickHouse native port on 127.0.0.1"`
	CHHTTPPort     int           `yaml:"clickhouse_http_port" flag:"clickhouse-http-port" help:"embedded ClickHouse HTTP port on 127.0.0.1"`
	CHTTLDays      int           `yaml:"clickhouse_ttl_days" flag:"clickhouse-ttl-days" help:"days ClickHouse keeps rows (0: forever)"`
	ShadowMaxSize  int           `yaml:"shadow_max_size" flag:"shadow-max-size" help:"largest shadow update request and document state, in bytes (413 above)"`
	ShadowMaxDepth int           `yaml:"shadow_max_depth" flag:"shadow-max-depth" help:"deepest nesting of a shadow's desired or reported state (400 deeper)"`
	ShadowRate     int           `yaml:"shadow_rate_limit" flag:"shadow-rate-limit" help:"most shadow requests per second per thing, more get 429 (0: no limit; AWS allows 20)"`
	RulesDir       string        `yaml:"rules_dir" flag:"rules" help:"directory of .sql rule files, hot-reloaded"`
	MaxEventSkew   time.Duration `yaml:"max_event_skew" flag:"max-event-skew" help:"how far past its receive time a rule's EVENT TIME may be; further goes to the DLQ (negative: no bound)"`
	WebhookSecret  string        `yaml:"webhook_secret" flag:"webhook-secret" help:"HMAC-SHA256 key signing webhook actions (X-Iotpipe-Signature)"`
	Pprof          bool          `yaml:"pprof" flag:"pprof" help:"serve Go profiles at /debug/pprof/ on the HTTP port"`
	HTTPTimeout    time.Duration `yaml:"http_read_timeout" flag:"http-read-timeout" help:"longest an HTTP client may take to send a request, headers and body (headers alone: at most 10s); its connection is closed after"`
	DrainTimeout   time.Duration `yaml:"drain_timeout" flag:"drain-timeout" help:"longest a shutdown may take to drain; past it iotpipe says what did not finish and exits with status 1"`
	LogLevel       string        `yaml:"log_level" flag:"log-level" help:"debug, info, warn or error"`
	LogFormat      string        `yaml:"log_format" flag:"log-format" help:"text or json"`
}

func defaultConfig() config {
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	return config{
		DataDir:        "data",
		MQTTAddr:       ":1883",
		MQTTSAddr:      ":8883",
		WSAddr:         ":8083",
		WSSAddr:        ":8084",
		AuthTimeout:    5 * time.Second,
		HTTPAddr:       "127.0.0.1:8080",
		KafkaPort:      9092,
		Partitions:     8,
		Retention:      72 * time.Hour,
		RetentionBytes: 256 << 20,
		MaxInFlight:    256,
		MaxPayload:     128 << 10,
		MQTTConnect:    10 * time.Second,
		MQTTSession:    time.Hour,
		MQTTQueue:      128,
		MQTTMaxQueued:  1024,
		Node:           host,
		RulesDir:       "rules",
		CHTCPPort:      9000,
		ShadowMaxSize:  document.DefaultMaxSize,
		ShadowMaxDepth: document.DefaultMaxDepth,
		MaxEventSkew:   rules.DefaultMaxEventSkew,
		CHHTTPPort:     8123,
		HTTPTimeout:    30 * time.Second,
		DrainTimeout:   30 * time.Second,
		LogLevel:       "info",
		LogFormat:      "text",
	}
}

// bindFlags registers one flag per config field on fs (plus --config),
// with the current values as defaults for --help.
func (c *config) bindFlags(fs *flag.FlagSet) *string {
	path := fs.String("config", os.Getenv("IOTPIPE_CONFIG"), "YAML config file (see deploy/iotpipe.example.yaml)")
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, help := f.Tag.Get("flag"), f.Tag.Get("help")
		help += " (env IOTPIPE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + ")"
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		case *int:
			fs.IntVar(p, name, *p, help)
		case *int64:
			fs.Int64Var(p, name, *p, help)
		case *time.Duration:
			fs.DurationVar(p, name, *p, help)
		}
	}
	return path
}

// loadConfig parses args into fs (flags only; positional arguments are
// an error) and applies the file and the environment under the flags the user set:
// it parses args into a scratch config to learn which flags were given,
// then builds defaults < file < env < given flags.
func loadConfig(fs *flag.FlagSet, args []string) (config, error) {
	c := defaultConfig()
	path := c.bindFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, fmt.Errorf("unexpected argument %q: %s takes flags only", pos[0], fs.Name())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	flagged := c // values as parsed (defaults + flags)
	out := defaultConfig()
	if *path != "" {
		b, err := os.ReadFile(*path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := decodeConfigFile(b, &out); err != nil {
			return c, fmt.Errorf("config %s: %w", *path, err)
		}
	}
	v, fv := reflect.ValueOf(&out).Elem(), reflect.ValueOf(&flagged).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("flag")
		env := "IOTPIPE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if s, ok := os.LookupEnv(env); ok {
			if err := setFromString(v.Field(i), s); err != nil {
				return c, fmt.Errorf("%s=%q: %w", env, s, err)
			}
		}
		if given[name] {
			v.Field(i).Set(fv.Field(i))
		}
	}
	return out, nil
}

// decodeConfigFile applies a YAML config file to c: a mapping of known
// keys, each given once, to values of their types (a fraction is no
// integer). An error says the line, the key and what it wants; an empty
// file changes nothing.
func decodeConfigFile(b []byte, c *config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // empty, or comments only
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want keys and values (key: value), one a line", m.Line)
	}
	fields := map[string]reflect.Value{}
	v := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		fields[v.Type().Field(i).Tag.Get("yaml")] = v.Field(i)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, val := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a key must be a name", k.Line)
		}
		f, ok := fields[k.Value]
		switch {
		case !ok:
			return fmt.Errorf("line %d: unknown key %q", k.Line, k.Value)
		case seen[k.Value]:
			return fmt.Errorf("line %d: key %q given twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		if err := decodeConfigValue(val, f); err != nil {
			return fmt.Errorf("line %d: %s%w", val.Line, k.Value, err)
		}
	}
	return nil
}

// decodeConfigValue decodes n into the config field f; its error reads
// after the key (` "abc": want an integer`).
func decodeConfigValue(n *yaml.Node, f reflect.Value) error {
	want := "a string"
	switch f.Interface().(type) {
	case bool:
		want = "true or false"
	case int, int64:
		want = "an integer"
	case time.Duration:
		want = "a duration such as 30s"
	}
	resolved := n
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		resolved = n.Alias
	}
	switch {
	case resolved.Kind == yaml.SequenceNode:
		return fmt.Errorf(": want %s, not a list", want)
	case resolved.Kind == yaml.MappingNode:
		return fmt.Errorf(": want %s, not a map", want)
	case resolved.Kind != yaml.ScalarNode:
		return fmt.Errorf(": want %s", want)
	case resolved.ShortTag() == "!!null":
		return fmt.Errorf(": want %s, not null", want)
	}
	bad := fmt.Errorf(" %q: want %s", resolved.Value, want)
	if want == "an integer" && resolved.ShortTag() != "!!int" {
		return bad // yaml.v3 would cut 1.5 to 1
	}
	if err := n.Decode(f.Addr().Interface()); err != nil {
		return bad
	}
	return nil
}

func setFromString(f reflect.Value, s string) error {
	switch p := f.Addr().Interface().(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*p = d
	}
	return nil
}

// kafkaCredentials returns what iotpipe authenticates to --kafka with:
// --kafka-credentials, else the embedded log's credentials file under
// --data-dir when there is one (roles sharing a data dir with `iotpipe
// ingest` find them), else none.
func (c *config) kafkaCredentials() (*eventlog.Credentials, error) {
	if c.Kafka == "" {
		return nil, nil // the embedded log has its own
	}
	if c.KafkaCreds != "" {
		return eventlog.ReadCredentials(c.KafkaCreds)
	}
	path := c.path("kafka", eventlog.CredentialsFile)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	return eventlog.ReadCredentials(path)
}

func (c *config) brokers() []string {
	if c.Kafka == "" {
		return nil
	}
	return strings.Split(c.Kafka, ",")
}

func (c *config) path(parts ...string) string {
	return filepath.Join(append([]string{c.DataDir}, parts...)...)
}

// validate checks values no flag type can: each error names the flag,
// the value and what is allowed.
func (c *config) validate() error {
	var errs []error
	bad := func(flag string, v any, want string) {
		errs = append(errs, fmt.Errorf("--%s (%s) %v: want %s", flag, strings.ReplaceAll(flag, "-", "_"), v, want))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log-level", strconv.Quote(c.LogLevel), "debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log-format", strconv.Quote(c.LogFormat), "text or json")
	}
	if c.Partitions < 1 {
		bad("partitions", c.Partitions, "1 or more")
	}
	if c.KafkaPort < -1 || c.KafkaPort == 0 || c.KafkaPort > 65535 {
		bad("kafka-port", c.KafkaPort, "a TCP port from 1 to 65535 (-1: any free port)")
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"clickhouse-tcp-port", c.CHTCPPort}, {"clickhouse-http-port", c.CHHTTPPort}} {
		if p.v < 1 || p.v > 65535 {
			bad(p.flag, p.v, "a TCP port from 1 to 65535")
		}
	}
	if c.BootstrapToken != "" {
		if err := registry.CheckTokenSecret(c.BootstrapToken); err != nil {
			bad("bootstrap-token", "(hidden)", "iotp_ and 43 base64url characters (256 bits), e.g. from `iotpipe tokens secret`")
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"drain-timeout", c.DrainTimeout}, {"http-read-timeout", c.HTTPTimeout}, {"authorizer-timeout", c.AuthTimeout}} {
		if d.v <= 0 {
			bad(d.flag, d.v, "a duration above 0 (e.g. 30s)")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", strconv.Quote(c.TLSCert), "given with --tls-key (both or neither)")
	}
	return errors.Join(errs...)
}

// parseLevel parses a log level name (case does not matter).
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// logger builds the logger config asks for (validate checked the level).
func (c *config) logger() *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	o := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, o))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o))
}
