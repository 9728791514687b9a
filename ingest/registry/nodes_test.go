package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// populate writes one of each entity through a and b alternately.
func populate(t *testing.T, a, b *node) {
	ctx := testCtx(t)
	ca := testCA(t)
	must[*Thing](t)(a.CreateThing(ctx, Thing{Name: "sensor-1", Attributes: map[string]string{"room": "a"}}))
	must[*Thing](t)(b.CreateThing(ctx, Thing{Name: "sensor-2"}))
	must[*Policy](t)(b.CreatePolicy(ctx, "allow", []byte(allowAll)))
	c, _, err := a.CreateCertificate(ctx, ca, CreateOptions{Thing: "sensor-1", Policies: []string{"allow"}})
	noErr(t, err)
	noErr(t, b.AttachThingPrincipal(ctx, "sensor-2", c.ID))
	must[*Thing](t)(b.UpdateThing(ctx, "sensor-1", ThingUpdate{Attributes: map[string]string{"floor": "2"}, Merge: true}))
	must[*CACertificate](t)(a.RegisterCA(ctx, testCA(t).CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, Policies: []string{"allow"}}))
	if _, _, err := b.CreateToken(ctx, TokenOptions{Principal: "dashboard", Policies: []string{"allow"}}); err != nil {
		t.Fatal(err)
	}
	other := issue(t, ca, "sensor-3")
	must[*Certificate](t)(b.RegisterCertificate(ctx, other.CertPEM, RegisterOptions{Status: StatusActive}))
	must[*Certificate](t)(a.RevokeCertificate(ctx, other.ID))
}

// Two nodes agree after writes from either; each write is in the
// writer's own view when it returns.
func TestTwoNodesAgree(t *testing.T) {
	lg := logtest.Open(t, 2)
	a, b := newNode(t, lg), newNode(t, lg)
	ctx := testCtx(t)
	populate(t, a, b)

	// A write is in the writing node's view when it returns.
	th, err := b.UpdateThing(ctx, "sensor-2", ThingUpdate{Attributes: map[string]string{"k": "v"}})
	noErr(t, err)
	if got, err := b.Thing("sensor-2"); err != nil || got.Version() != th.Version() || got.Attributes["k"] != "v" {
		t.Fatalf("writer's view after the write: %+v, %v", got, err)
	}
	eventually(t, "the two views agree", func() bool { return dump(t, a.Registry) == dump(t, b.Registry) })
	things, err := a.ListThings(ListOptions{})
	noErr(t, err)
	if len(things) != 2 || things[0].Attributes["floor"] != "2" || things[0].Attributes["room"] != "a" {
		t.Errorf("things: %+v", things)
	}
}

// A new node rebuilds the view from the topic; a restarted node resumes
// from its view's position (it applies only what it missed).
func TestRebuildAndResume(t *testing.T) {
	lg := logtest.Open(t, 2)
	dir := filepath.Join(t.TempDir(), "a")
	a := startNode(t, lg, dir, Options{})
	b := newNode(t, lg)
	populate(t, a, b)
	want := dump(t, a.Registry) // a wrote last: its view holds every write

	fresh := newNode(t, lg)
	if got := dump(t, fresh.Registry); got != want {
		t.Errorf("a new node's view:\n%s\nwant\n%s", got, want)
	}

	a.stop()
	ctx := testCtx(t)
	must[*Thing](t)(b.CreateThing(ctx, Thing{Name: "while-a-was-down"}))
	a2 := startNode(t, lg, dir, Options{})
	if _, err := a2.Thing("while-a-was-down"); err != nil {
		t.Errorf("restarted node missed a write made while it was down: %v", err)
	}
	if n := counter(t, a2.metrics.applied); n != 1 {
		t.Errorf("restarted node applied %v records, want only the 1 it missed", n)
	}
	if got, want := dump(t, a2.Registry), dump(t, b.Registry); got != want {
		t.Errorf("restarted view:\n%s\nwant\n%s", got, want)
	}
}

// A node's view made from another log (the topic created again, a new
// data directory for the log) is rebuilt, not trusted.
func TestViewOfAnotherLogRebuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "view")
	lg1 := logtest.Open(t, 1)
	n1 := startNode(t, lg1, dir, Options{})
	must[*Thing](t)(n1.CreateThing(testCtx(t), Thing{Name: "only-in-the-first-log"}))
	n1.stop()
	lg1.Close()

	lg2 := logtest.Open(t, 1)
	n2 := startNode(t, lg2, dir, Options{})
	if _, err := n2.Thing("only-in-the-first-log"); !errors.Is(err, ErrNotFound) {
		t.Errorf("thing of the other log: %v", err)
	}
	must[*Thing](t)(n2.CreateThing(testCtx(t), Thing{Name: "second"}))
}

// A revocation on one node reaches the other's watchers as the end of
// the certificate's sessions (the front has 5 s to disconnect them).
func TestRevokeSeenByOtherNode(t *testing.T) {
	lg := logtest.Open(t, 2)
	a, b := newNode(t, lg), newNode(t, lg)
	ctx := testCtx(t)
	ca := testCA(t)
	must[*Thing](t)(a.CreateThing(ctx, Thing{Name: "dev"}))
	c, _, err := a.CreateCertificate(ctx, ca, CreateOptions{Thing: "dev"})
	noErr(t, err)
	eventually(t, "b sees the certificate", func() bool { _, err := b.Certificate(c.ID); return err == nil })

	ends := make(chan End, 10)
	cancel := b.Watch(func(ch Change) {
		if e, ok := ch.Ends(); ok {
			ends <- e
		}
	})
	defer cancel()
	start := time.Now()
	must[*Certificate](t)(a.RevokeCertificate(ctx, c.ID))
	select {
	case e := <-ends:
		t.Logf("revocation seen by the other node after %v", time.Since(start))
		if e.Principal != c.ID || e.Reason != "certificate REVOKED" {
			t.Errorf("end %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other node did not see the revocation within 5 s")
	}
	if got, _ := b.Certificate(c.ID); got.Status != StatusRevoked {
		t.Errorf("status on b: %s", got.Status)
	}

	// Deleting the thing ends its sessions too.
	noErr(t, a.DeleteThing(ctx, "dev", 0))
	select {
	case e := <-ends:
		if e.Thing != "dev" {
			t.Errorf("end %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other node did not see the thing deleted within 5 s")
	}
	if things, _ := b.PrincipalThings(c.ID); len(things) != 0 {
		t.Errorf("deleted thing still attached: %v", things)
	}
}

// Concurrent updates of one version, from both nodes: one wins, every
// other gets ErrVersionConflict, and the version moved by one.
func TestStaleVersionConflicts(t *testing.T) {
	lg := logtest.Open(t, 2)
	a, b := newNode(t, lg), newNode(t, lg)
	ctx := testCtx(t)
	th := must[*Thing](t)(a.CreateThing(ctx, Thing{Name: "contended"}))
	eventually(t, "b sees the thing", func() bool { _, err := b.Thing("contended"); return err == nil })

	errs := make([]error, 10)
	spread(len(errs), a, b, func(i int, n *node) {
		_, errs[i] = n.UpdateThing(ctx, "contended", ThingUpdate{
			ExpectedVersion: th.Version(), Attributes: map[string]string{"writer": string(rune('a' + i))},
		})
	})
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrVersionConflict):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers won, want 1", won)
	}
	eventually(t, "both nodes at version 2", func() bool {
		x, err1 := a.Thing("contended")
		y, err2 := b.Thing("contended")
		return err1 == nil && err2 == nil && x.Version() == 2 && y.Version() == 2 && x.Attributes["writer"] == y.Attributes["writer"]
	})
	_, err := b.UpdateThing(ctx, "contended", ThingUpdate{ExpectedVersion: 1})
	wantErr(t, err, ErrVersionConflict)
}

// 20 concurrent first connects of one certificate, on two nodes,
// register it once: one call registers, the others find it, and the
// topic holds one record of it.
func TestJITROnce(t *testing.T) {
	lg := logtest.Open(t, 2)
	a, b := newNode(t, lg), newNode(t, lg)
	ctx := testCtx(t)
	ca := testCA(t)
	must[*Policy](t)(a.CreatePolicy(ctx, "device", []byte(allowAll)))
	reg := must[*CACertificate](t)(a.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, Policies: []string{"device"}}))
	eventually(t, "b sees the CA", func() bool { _, err := b.CA(reg.ID); return err == nil })
	dev := issue(t, ca, "jit-device")

	const connects = 20
	results := make([]*JITResult, connects)
	errs := make([]error, connects)
	spread(connects, a, b, func(i int, n *node) {
		results[i], errs[i] = n.RegisterJIT(ctx, []*x509.Certificate{dev.Certificate})
	})
	registered := 0
	for i := range connects {
		if errs[i] != nil {
			t.Fatalf("connect %d: %v", i, errs[i])
		}
		if results[i].Certificate.ID != dev.ID {
			t.Errorf("connect %d: certificate %s", i, results[i].Certificate.ID)
		}
		if results[i].Registered {
			registered++
		}
	}
	if registered != 1 {
		t.Errorf("%d calls registered the certificate, want 1", registered)
	}
	records := 0
	noErr(t, eventlog.ReadToEnd(ctx, lg.Client, lg.Topics().Registry, func(r *kgo.Record) error {
		if string(r.Key) == certKey(dev.ID) {
			records++
		}
		return nil
	}))
	if records != 1 {
		t.Errorf("%d records of the certificate on the topic, want 1", records)
	}
	for _, n := range []*node{a, b} {
		eventually(t, "both nodes see the registration", func() bool {
			ps, err := n.PrincipalPolicies(dev.ID)
			ok, _ := n.Attached(dev.ID, "jit-device")
			return err == nil && len(ps) == 1 && ok
		})
	}
}

// A record that is not valid (written by something other than a
// registry) is applied as a delete of its key, counted, and changes
// nothing else; the registry goes on.
func TestInvalidRecordIsDelete(t *testing.T) {
	lg := logtest.Open(t, 1)
	n := newNode(t, lg)
	ctx := testCtx(t)
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "victim"}))
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "bystander"}))

	cl, err := lg.Client()
	noErr(t, err)
	defer cl.Close()
	for _, rec := range []*kgo.Record{
		{Key: []byte("thing/victim"), Value: []byte(`{"format":1,"kind":"thing","thingName":"other","version":1}`)},
		{Key: []byte("nonsense"), Value: []byte(`{}`)},
		{Key: []byte("thing/x"), Value: []byte(`not json`)},
	} {
		rec.Topic, rec.Partition = lg.Topics().Registry, 0
		noErr(t, cl.ProduceSync(ctx, rec).FirstErr())
	}
	eventually(t, "the invalid records counted", func() bool { return counter(t, n.metrics.invalid) == 3 })
	if _, err := n.Thing("victim"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the key of an invalid record: %v", err)
	}
	if _, err := n.Thing("bystander"); err != nil {
		t.Errorf("another thing: %v", err)
	}
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "victim"}))
}

// Writes fail clearly when Run is not running.
func TestWriteWithoutRun(t *testing.T) {
	lg := logtest.Open(t, 1)
	r, err := New(lg, Options{Dir: t.TempDir(), Logger: logtest.Quiet()})
	noErr(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = r.CreateThing(ctx, Thing{Name: "x"})
	wantErr(t, err, ErrClosed)
}

// A node that checked a write against its view must not commit it once
// another node wrote in between: the other node's producer fenced it,
// so it tries again against the new view (and conflicts).
func TestWriteFencedByOtherNode(t *testing.T) {
	lg := logtest.Open(t, 1)
	a := newNode(t, lg)
	held, hold, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once sync.Once
	var gated atomic.Bool
	b := startNode(t, lg, filepath.Join(t.TempDir(), "b"), Options{}, func(r *Registry) {
		r.hooks.beforeOps = func() {
			once.Do(func() {
				gated.Store(true) // b's view keeps version 1 for this try
				close(held)
				<-hold
			})
		}
		r.hooks.beforeApply = func() {
			if gated.Load() {
				<-release
			}
		}
	})
	ctx := testCtx(t)
	must[*Thing](t)(a.CreateThing(ctx, Thing{Name: "t"}))
	eventually(t, "b sees the thing", func() bool { _, err := b.Thing("t"); return err == nil })

	errB := make(chan error, 1)
	go func() {
		_, err := b.UpdateThing(ctx, "t", ThingUpdate{ExpectedVersion: 1, Attributes: map[string]string{"writer": "b"}})
		errB <- err
	}()
	<-held // b holds its producer and checks against version 1
	must[*Thing](t)(a.UpdateThing(ctx, "t", ThingUpdate{ExpectedVersion: 1, Attributes: map[string]string{"writer": "a"}}))
	close(hold)
	time.Sleep(300 * time.Millisecond) // the window b's stale try has
	gated.Store(false)
	close(release)
	wantErr(t, <-errB, ErrVersionConflict)
	if counter(t, b.metrics.retries) < 1 {
		t.Error("b's stale try was not tried again")
	}
	eventually(t, "a's write stands on both", func() bool {
		x, err := b.Thing("t")
		return err == nil && x.Version() == 2 && x.Attributes["writer"] == "a"
	})
}

// A node whose view lags does not check a write against it: it waits
// until its view holds what other nodes committed before.
func TestWriteWaitsForOtherNodesWrites(t *testing.T) {
	lg := logtest.Open(t, 1)
	a := newNode(t, lg)
	var gated atomic.Bool
	release := make(chan struct{})
	b := startNode(t, lg, filepath.Join(t.TempDir(), "b"), Options{}, func(r *Registry) {
		r.hooks.beforeApply = func() {
			if gated.Load() {
				<-release
			}
		}
	})
	ctx := testCtx(t)
	must[*Thing](t)(a.CreateThing(ctx, Thing{Name: "t"}))
	eventually(t, "b sees the thing", func() bool { _, err := b.Thing("t"); return err == nil })

	gated.Store(true) // b's view stops before a's next write
	must[*Thing](t)(a.UpdateThing(ctx, "t", ThingUpdate{Attributes: map[string]string{"writer": "a"}}))
	errB := make(chan error, 1)
	go func() {
		_, err := b.UpdateThing(ctx, "t", ThingUpdate{ExpectedVersion: 1, Attributes: map[string]string{"writer": "b"}})
		errB <- err
	}()
	time.Sleep(500 * time.Millisecond) // the window a stale check would use
	gated.Store(false)
	close(release)
	wantErr(t, <-errB, ErrVersionConflict)
}
