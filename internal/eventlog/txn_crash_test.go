package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// crashChildEnv makes the test binary a child that writes transactions
// to a log in the given dir and exits like kill -9 with one open.
const crashChildEnv = "IOTPIPE_TXN_CRASH_CHILD"

// halfChildEnv makes the test binary a child that commits a transaction
// over two partitions and exits like kill -9 right after (see
// TestTransactionHalfMarkedAtCrashCommits).
const halfChildEnv = "IOTPIPE_TXN_HALF_CHILD"

// openChildEnv makes the test binary a child that commits a
// transaction, leaves one open with a single batch and exits like kill
// -9 (see TestTransactionBatchWithoutIndexEntryStaysInItsTransaction).
const openChildEnv = "IOTPIPE_TXN_OPEN_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if dir := os.Getenv(halfChildEnv); dir != "" {
		halfChild(dir)
		return
	}
	if dir := os.Getenv(openChildEnv); dir != "" {
		openChild(dir)
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

// runChild runs this test binary as the child env names, over a fresh
// data directory it returns, and fails unless the child ended as a
// kill -9 would (exit status 137).
func runChild(t *testing.T, env string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 137 {
		t.Fatalf("child: %v\n%s", cmd.ProcessState, out)
	}
	return dir
}

// Transactions across a crash of the embedded log's process: a
// transaction open at the crash is never read as committed, and the
// transactions the same producer commits after the restart are.
func TestTransactionsAcrossCrash(t *testing.T) {
	dir := runChild(t, crashChildEnv)
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

// halfChild commits one transaction with a record in each of the two
// partitions of the changelog, noting the size of pids.log before the
// commit (in pids.size), and exits like kill -9.
func halfChild(dir string) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 2})
	if err != nil {
		panic(err)
	}
	cl := txnClient(l, "t-half")
	if err := cl.BeginTransaction(); err != nil {
		panic(err)
	}
	for p := range int32(2) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "iotpipe.changelog", Partition: p, Value: fmt.Appendf(nil, "x%d", p)}).FirstErr(); err != nil {
			panic(err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "pids.log"))
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.size"), []byte(strconv.FormatInt(st.Size(), 10)), 0o644); err != nil {
		panic(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		panic(err)
	}
	os.Exit(137)
}

// The embedded log's process killed while it wrote a committing
// transaction's markers, one partition after another: what the disk
// holds then is made here from a committed transaction by removing one
// partition's commit marker and what pids.log got after the markers
// (with the fix, the commit decision logged before them stays). At
// the next start the transaction is committed in both partitions (the
// reliability suite's kill fault found it committed in the actions
// topic and aborted in the changelog: the events were processed again
// and their actions repeated).
func TestTransactionHalfMarkedAtCrashCommits(t *testing.T) {
	dir := runChild(t, halfChildEnv)
	dropLastBatch(t, filepath.Join(dir, "partitions", "iotpipe.changelog-1"))
	dropEndOfCommit(t, dir)

	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	read := func(p int32) string {
		var got []string
		if _, err := ReadPartition(ctx, l.Client, "iotpipe.changelog", p, 0, func(r *kgo.Record) error {
			got = append(got, string(r.Value))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got)
	}
	if a, b := read(0), read(1); a != "[x0]" || b != "[x1]" {
		t.Fatalf("after the crash: partition 0 %s, partition 1 %s; want [x0] and [x1], the transaction committed in both", a, b)
	}
	// The producer goes on after the restart.
	cl := txnClient(l, "t-half")
	defer cl.Close()
	txn(ctx, cl, "iotpipe.changelog", []string{"y0"}, true)
	if got := read(0); got != "[x0 y0]" {
		t.Fatalf("after a new transaction: %s, want [x0 y0]", got)
	}
}

// dropEndOfCommit truncates pids.log after the last commit decision
// (the entries of the markers' end), or, without one, to its size
// before the commit (pids.size).
func dropEndOfCommit(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "pids.log")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := int64(-1)
	for pos := 0; pos+10 <= len(raw); { // [4 length][4 CRC][length bytes: 2 version, JSON]
		end := pos + 8 + int(binary.LittleEndian.Uint32(raw[pos:pos+4]))
		if end > len(raw) {
			break
		}
		if bytes.Contains(raw[pos+10:end], []byte(`"type":"commit"`)) {
			cut = int64(end)
		}
		pos = end
	}
	if cut < 0 {
		size, err := os.ReadFile(filepath.Join(dir, "pids.size"))
		if err != nil {
			t.Fatal(err)
		}
		cut, _ = strconv.ParseInt(string(size), 10, 64)
	}
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
}

// dropLastBatch removes the last record batch of a partition directory's
// only segment (its bytes in 0.dat, its entry in 0.idx), as if the
// process died before writing it.
func dropLastBatch(t *testing.T, pdir string) {
	t.Helper()
	dat := filepath.Join(pdir, "0.dat")
	raw, err := os.ReadFile(dat)
	if err != nil {
		t.Fatal(err)
	}
	last, batches := 0, 0
	for pos := 0; pos+12 <= len(raw); batches++ {
		last = pos
		pos += 12 + int(binary.BigEndian.Uint32(raw[pos+8:pos+12]))
	}
	if batches < 2 {
		t.Fatalf("%s holds %d batches, want the records and the marker", dat, batches)
	}
	if err := os.Truncate(dat, int64(last)); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(pdir, "0.idx")
	st, err := os.Stat(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx, st.Size()-st.Size()/int64(batches)); err != nil {
		t.Fatal(err)
	}
}

// openChild commits a1, writes b1 in a transaction it leaves open and
// exits like kill -9.
func openChild(dir string) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		panic(err)
	}
	cl := txnClient(l, "t-open")
	txn(ctx, cl, "iotpipe.changelog", []string{"a1"}, true)
	txn(ctx, cl, "iotpipe.changelog", []string{"b1"}, false)
	os.Exit(137)
}

// The embedded log's process killed between writing a transaction's
// batch to its segment and its entry to the segment's index (made here
// by removing the last index entry after openChild): the batch is still
// read as part of its transaction, aborted at the crash. (The
// reliability suite's kill fault found such a batch read as committed in
// iotpipe.shadows while the rest of its transaction was aborted: the
// events were processed again.)
func TestTransactionBatchWithoutIndexEntryStaysInItsTransaction(t *testing.T) {
	dir := runChild(t, openChildEnv)
	idx := filepath.Join(dir, "partitions", "iotpipe.changelog-0", "0.idx")
	st, err := os.Stat(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx, st.Size()-15); err != nil { // one entry: b1's
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []string
	if _, err := ReadPartition(ctx, l.Client, "iotpipe.changelog", 0, 0, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[a1]" {
		t.Fatalf("after the crash: %v, want [a1] (b1 was in the transaction open at the crash)", got)
	}
}
