package eventlog

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// crashChildEnv makes the test binary a child that writes transactions
// to a log in the given dir and exits like kill -9 with one open.
const crashChildEnv = "IOTPIPE_TXN_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

func txnClient(l *Log, id string) *kgo.Client {
	cl, err := l.Client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		panic(err)
	}
	return cl
}

func txn(ctx context.Context, cl *kgo.Client, topic string, vals []string, commit bool) {
	if err := cl.BeginTransaction(); err != nil {
		panic(err)
	}
	for _, v := range vals {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}).FirstErr(); err != nil {
			panic(err)
		}
	}
	if !commit {
		return
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		panic(err)
	}
}

func crashChild(dir string) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		panic(err)
	}
	cl := txnClient(l, "t-0")
	txn(ctx, cl, "iotpipe.changelog", []string{"a1", "a2"}, true)
	txn(ctx, cl, "iotpipe.changelog", []string{"b1", "b2"}, false)
	os.Exit(137)
}

// Transactions across a crash of the embedded log's process: a
// transaction open at the crash is never read as committed, and the
// transactions the same producer commits after the restart are.
func TestTransactionsAcrossCrash(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 137 {
		t.Fatalf("child: %v\n%s", cmd.ProcessState, out)
	}
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	read := func() string {
		var got []string
		_, err := ReadPartition(ctx, l.Client, "iotpipe.changelog", 0, 0, func(r *kgo.Record) error {
			got = append(got, string(r.Value))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	if got := read(); got != "[a1 a2]" {
		t.Fatalf("after the crash: %s, want [a1 a2]", got)
	}
	cl := txnClient(l, "t-0")
	defer cl.Close()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "[a1 a2]" {
		t.Fatalf("after the producer's restart: %s, want [a1 a2]", got)
	}
	txn(ctx, cl, "iotpipe.changelog", []string{"c1"}, true)
	txn(ctx, cl, "iotpipe.changelog", []string{"d1"}, true)
	if got := read(); got != "[a1 a2 c1 d1]" {
		t.Fatalf("after new transactions: %s, want [a1 a2 c1 d1]", got)
	}
}
