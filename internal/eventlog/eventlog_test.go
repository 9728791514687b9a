package eventlog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{DataDir: dir, Port: -1, Partitions: 3}
	l, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := l.Client(kgo.DefaultProduceTopic(l.Topics().Events))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := 0; i < n; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("thing"), Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	l.Close()

	l, err = Open(ctx, opts) // topics exist now: EnsureTopics must not fail
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer l.Close()
	cl, err = l.Client(kgo.ConsumeTopics(l.Topics().Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for got < n {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("read back %d of %d records", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value[0] != byte(got) {
				t.Errorf("record %d has value %d", got, r.Value[0])
			}
			got++
		})
	}
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, l.Topics().All()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range l.Topics().All() {
		if d, ok := td[topic]; !ok || len(d.Partitions) != 3 {
			t.Errorf("topic %s: %+v", topic, td[topic])
		}
	}
}

// CreateTopic makes a topic like the event topics (partitions, retention)
// and accepts one that exists; MissingTopics names those that do not
// exist, each once, and creates nothing.
func TestCreateTopicAndMissingTopics(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: t.TempDir(), Port: -1, Partitions: 3, RetentionTime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 2; i++ {
		if err := l.CreateTopic(ctx, "alerts"); err != nil {
			t.Fatalf("create (%d): %v", i, err)
		}
	}
	cl, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, "alerts")
	if err != nil || len(td["alerts"].Partitions) != 3 {
		t.Fatalf("alerts: %+v, %v", td["alerts"], err)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, "alerts")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On("alerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	retention := ""
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" && c.Value != nil {
			retention = *c.Value
		}
	}
	if retention != "3600000" {
		t.Errorf("alerts retention.ms = %q, want 3600000", retention)
	}
	missing, err := MissingTopics(ctx, l.Brokers(), l.Credentials(), []string{"nope", "alerts", l.Topics().Events, "nope", "also-nope"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "also-nope,nope" {
		t.Errorf("missing = %v, want [also-nope nope]", missing)
	}
	if td, _ := adm.ListTopics(ctx, "nope"); td.Has("nope") && td["nope"].Err == nil {
		t.Error("MissingTopics created a topic")
	}
}

// An embedded log is recognised as such in its own process and from
// another one that reaches it as an external cluster; another cluster
// is not.
func TestIotpipeEmbedded(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: t.TempDir(), Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	remote, err := Open(ctx, Options{Brokers: l.Brokers(), Credentials: l.Credentials(), Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	for name, lg := range map[string]*Log{"in process": l, "through --kafka": remote} {
		if ok, err := lg.IotpipeEmbedded(ctx); !ok || err != nil {
			t.Errorf("%s: IotpipeEmbedded = %v, %v", name, ok, err)
		}
	}
	other, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ext, err := Open(ctx, Options{Brokers: other.ListenAddrs(), Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ext.IotpipeEmbedded(ctx); ok || err != nil {
		t.Errorf("another cluster: IotpipeEmbedded = %v, %v", ok, err)
	}
}

// The embedded log accepts no client without its credentials (any local
// user could write forged events or read everything before): they are
// generated on its first start, kept in its data dir (0600) and used by
// iotpipe's own clients; a restart keeps them (issue 21 item 24).
func TestEmbeddedLogRequiresCredentials(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Brokers()
	fi, err := os.Stat(filepath.Join(dir, CredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, %v (want mode 0600)", fi, err)
	}
	anon, err := kgo.NewClient(kgo.SeedBrokers(addr...), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := anon.ProduceSync(actx, &kgo.Record{Topic: l.Topics().Events, Value: []byte("forged")}).FirstErr(); err == nil {
		t.Fatal("a client without credentials wrote to the embedded log")
	}
	own, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := own.ProduceSync(ctx, &kgo.Record{Topic: l.Topics().Events, Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatalf("iotpipe's own client: %v", err)
	}
	own.Close()
	before := *l.Credentials()
	l.Close()
	l, err = Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if *l.Credentials() != before {
		t.Fatal("the credentials changed across a restart")
	}
}
