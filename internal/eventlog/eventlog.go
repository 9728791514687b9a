// Package eventlog opens iotpipe's Kafka log: the embedded franz-go kfake
// broker persisted under the data directory, or an external Kafka or
// Redpanda cluster. Either way it creates the topics iotpipe needs and
// hands out franz-go clients; nothing else can tell the two apart.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/iotpipe/iotpipe/internal/freeport"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configures the log. The zero value of a field means its
// documented default.
type Options struct {
	// Brokers are external Kafka seed brokers. Empty means embedded.
	Brokers []string
	// Credentials authenticate iotpipe's clients to external brokers
	// (nil: none). The embedded log makes its own on its first start
	// (CredentialsFile in DataDir) and accepts no client without them.
	Credentials *Credentials
	// DataDir is where the embedded broker persists its log
	// (default ./data/kafka).
	DataDir string
	// Port is the embedded broker's TCP port on 127.0.0.1 (default 9092;
	// -1 picks a free port).
	Port int
	// SyncWrites makes the embedded broker fsync every batch before it
	// answers: an OS crash or power loss then loses nothing acknowledged,
	// at a throughput cost. Without it a kill -9 of iotpipe still loses
	// nothing acknowledged (every batch is written before the answer),
	// but an OS crash can lose the last unsynced writes.
	SyncWrites bool
	// Topics are the topic names (default schemas.DefaultTopics()).
	Topics schemas.Topics
	// Partitions is the partition count of topics created here (default 8).
	Partitions int32
	// Retention bounds how long (default 72h) and how many bytes per
	// partition (default 256 MiB) the event topics keep. The embedded
	// broker loads its whole log into memory at start, so these bound its
	// memory too. 0 means the default, -1 means unbounded.
	RetentionTime  time.Duration
	RetentionBytes int64
	// Logger receives progress and warnings (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.DataDir == "" {
		o.DataDir = filepath.Join("data", "kafka")
	}
	if o.Port == 0 {
		o.Port = 9092
	}
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.Partitions <= 0 {
		o.Partitions = 8
	}
	if o.RetentionTime == 0 {
		o.RetentionTime = 72 * time.Hour
	}
	if o.RetentionBytes == 0 {
		o.RetentionBytes = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Log is an open event log.
type Log struct {
	opts    Options
	cluster *kfake.Cluster
	brokers []string
	space   *diskspace.Watch // the embedded log's data dir
}

// diskFullBelow is the free space under which the embedded log's disk
// counts as full: a produce batch is up to 1 MiB, and a segment roll
// writes more.
const diskFullBelow = 16 << 20

// WriteError says why the log refuses writes, when it knows: for the
// embedded log, an error wrapping diskspace.ErrFull while the filesystem
// of its data directory has less than 16 MiB free (it accepts writes
// again by itself once there is room). It returns nil otherwise, and
// always for an external cluster, which reports its own errors.
func (l *Log) WriteError() error {
	if l.space == nil {
		return nil
	}
	if err := l.space.Check(); err != nil {
		return fmt.Errorf("embedded log: %w", err)
	}
	return nil
}

// Open starts the embedded broker (or checks the external one) and
// creates any missing topics.
func Open(ctx context.Context, opts Options) (*Log, error) {
	opts.defaults()
	l := &Log{opts: opts, brokers: opts.Brokers}
	if len(opts.Brokers) == 0 {
		if err := l.startEmbedded(); err != nil {
			return nil, err
		}
	}
	if err := l.EnsureTopics(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) startEmbedded() error {
	o := l.opts
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return fmt.Errorf("embedded log: create %s: %w", o.DataDir, err)
	}
	port := o.Port
	if port < 0 {
		ps, err := freeport.Ports(1)
		if err != nil {
			return err
		}
		port = ps[0]
	}
	creds, created, err := embeddedCredentials(o.DataDir)
	if err != nil {
		return fmt.Errorf("embedded log: %w", err)
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(o.DataDir),
		kfake.DefaultNumPartitions(int(o.Partitions)),
		kfake.ClusterID(embeddedClusterID),
		kfake.EnableSASL(),
		kfake.Superuser(creds.Mechanism, creds.User, creds.Password),
	}
	if o.SyncWrites {
		kopts = append(kopts, kfake.SyncWrites())
	}
	start := time.Now()
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return fmt.Errorf("embedded log: start broker on 127.0.0.1:%d with data in %s: %w (is another iotpipe running? use --kafka-port or --data-dir)", port, o.DataDir, err)
	}
	// kfake reads every segment into memory at start; give the
	// transient peak back to the OS.
	debug.FreeOSMemory()
	l.cluster = c
	l.brokers = c.ListenAddrs()
	l.opts.Credentials = creds
	if created {
		o.Logger.Info("embedded log credentials generated: every client authenticates (SASL SCRAM-SHA-256)", "file", filepath.Join(o.DataDir, CredentialsFile))
	}
	// Asked when a write failed: read afresh (a failure right after a
	// reading must not be put down to something else).
	l.space = &diskspace.Watch{Dir: o.DataDir, Min: diskFullBelow, Every: 10 * time.Millisecond}
	o.Logger.Info("embedded log started", "addr", l.brokers[0], "data_dir", o.DataDir,
		"sync_writes", o.SyncWrites, "load_time", time.Since(start).Round(time.Millisecond))
	return nil
}

// Brokers returns the seed brokers clients connect to.
func (l *Log) Brokers() []string { return l.brokers }

// Embedded reports whether the log is the in-process broker.
func (l *Log) Embedded() bool { return l.cluster != nil }

// embeddedClusterID is the cluster id of every embedded log.
const embeddedClusterID = "iotpipe-embedded"

// IotpipeEmbedded reports whether the log is an iotpipe embedded log:
// this process's, or another iotpipe node's that this one reaches with
// --kafka (see IsEmbeddedCluster). Topics iotpipe's own actions name
// are created there on first use, never on another cluster.
func (l *Log) IotpipeEmbedded(ctx context.Context) (bool, error) {
	if l.cluster != nil {
		return true, nil
	}
	return IsEmbeddedCluster(ctx, l.brokers, l.opts.Credentials)
}

// IsEmbeddedCluster reports whether the cluster at brokers is an iotpipe
// embedded log (its cluster id says so).
func IsEmbeddedCluster(ctx context.Context, brokers []string, creds *Credentials) (bool, error) {
	var embedded bool
	err := withAdmin(ctx, brokers, creds, func(ctx context.Context, adm *kadm.Client) error {
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return fmt.Errorf("metadata of %v: %w", brokers, err)
		}
		embedded = m.Cluster == embeddedClusterID
		return nil
	})
	return embedded, err
}

// withAdmin runs fn with an admin client of the cluster at brokers,
// bounded by 15s.
func withAdmin(ctx context.Context, brokers []string, creds *Credentials, fn func(ctx context.Context, adm *kadm.Client) error) error {
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RequestRetries(2)}
	if creds != nil {
		o, err := creds.Opt()
		if err != nil {
			return err
		}
		opts = append(opts, o)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return fn(ctx, kadm.NewClient(cl))
}

// Topics returns the topic names in use.
func (l *Log) Topics() schemas.Topics { return l.opts.Topics }

// Partitions returns the partition count used for created topics.
func (l *Log) Partitions() int32 { return l.opts.Partitions }

// Credentials returns what iotpipe's clients authenticate with (nil:
// nothing).
func (l *Log) Credentials() *Credentials { return l.opts.Credentials }

// Client returns a franz-go client seeded with the log's brokers and
// authenticated with its credentials; opts are applied after those.
func (l *Log) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	all := []kgo.Opt{kgo.SeedBrokers(l.brokers...)}
	if c := l.opts.Credentials; c != nil {
		o, err := c.Opt()
		if err != nil {
			return nil, err
		}
		all = append(all, o)
	}
	all = append(all, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", l.brokers, err)
	}
	return cl, nil
}

// EnsureTopics creates every missing topic with the configured partition
// count and retention (the shadows topic compacted). Existing topics are
// left as they are.
func (l *Log) EnsureTopics(ctx context.Context) error {
	return l.createTopics(ctx, l.opts.Topics.All()...)
}

// CreateTopic creates topic, if it does not exist yet, with the
// configured partition count and the event topics' retention (the
// kafka action's target topics are made this way on the embedded log).
func (l *Log) CreateTopic(ctx context.Context, topic string) error {
	return l.createTopics(ctx, topic)
}

func (l *Log) createTopics(ctx context.Context, topics ...string) error {
	cl, err := l.Client(kgo.RequestRetries(3))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o := l.opts
	for _, topic := range topics {
		configs := map[string]*string{}
		if o.Topics.Compacted(topic) {
			configs["cleanup.policy"] = kadm.StringPtr("compact")
		} else {
			if o.RetentionTime > 0 {
				configs["retention.ms"] = kadm.StringPtr(strconv.FormatInt(o.RetentionTime.Milliseconds(), 10))
			}
			if o.RetentionBytes > 0 {
				configs["retention.bytes"] = kadm.StringPtr(strconv.FormatInt(o.RetentionBytes, 10))
			}
		}
		resp, err := adm.CreateTopic(ctx, o.Partitions, -1, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s on %v: %w", topic, l.brokers, err)
		}
		if err == nil {
			o.Logger.Debug("created topic", "topic", topic, "partitions", o.Partitions)
		}
	}
	return nil
}

// MissingTopics returns those of topics that do not exist on the
// cluster at brokers (sorted, each once). It creates nothing.
func MissingTopics(ctx context.Context, brokers []string, creds *Credentials, topics []string) ([]string, error) {
	var missing []string
	err := withAdmin(ctx, brokers, creds, func(ctx context.Context, adm *kadm.Client) error {
		details, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return fmt.Errorf("list topics on %v: %w", brokers, err)
		}
		for _, t := range topics {
			if d, ok := details[t]; (!ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)) && !slices.Contains(missing, t) {
				missing = append(missing, t)
			}
		}
		return nil
	})
	slices.Sort(missing)
	return missing, err
}

// Close stops the embedded broker (flushing its files); it does nothing
// for an external cluster.
func (l *Log) Close() {
	if l.cluster != nil {
		l.cluster.Close()
		l.cluster = nil
	}
}
