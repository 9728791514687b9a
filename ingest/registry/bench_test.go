package registry

import (
	"fmt"
	"sync"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/internal/logtest"
)

// BenchmarkConnectLookups measures the lookups the MQTT front makes on a
// CONNECT, in a registry of 1,000 things, each with a certificate
// (issued by iotpipe's CA, attached to the thing and to one policy),
// a registered CA and a token: each alone, and the set a certificate
// CONNECT makes (certificate, thing attached to it, the thing, its
// policies).
func BenchmarkConnectLookups(b *testing.B) {
	const things = 1000
	n := newNode(b, logtest.Open(b, 1))
	ctx := testCtx(b)
	ca := testCA(b)
	must[*Policy](b)(n.CreatePolicy(ctx, "device", []byte(allowAll)))
	reg := testCA(b)
	must[*CACertificate](b)(n.RegisterCA(ctx, reg.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true}))
	_, secret, err := n.CreateToken(ctx, TokenOptions{Principal: "dashboard", Policies: []string{"device"}})
	noErr(b, err)

	ids := make([]string, things)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, things)
	for i := range things {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("device-%04d", i)
			if _, err := n.CreateThing(ctx, Thing{Name: name, Attributes: map[string]string{"site": "north"}}); err != nil {
				errs <- err
				return
			}
			c, _, err := n.CreateCertificate(ctx, ca, CreateOptions{Thing: name, Policies: []string{"device"}})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	jit := pki.IssuerOf(issue(b, reg, "jit").Certificate)

	run := func(name string, fn func(i int) error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := fn(i % things); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	run("certificate", func(i int) error { _, err := n.Certificate(ids[i]); return err })
	run("thing", func(i int) error { _, err := n.Thing(fmt.Sprintf("device-%04d", i)); return err })
	run("attached", func(i int) error {
		ok, err := n.Attached(ids[i], fmt.Sprintf("device-%04d", i))
		if err == nil && !ok {
			err = fmt.Errorf("device-%04d not attached", i)
		}
		return err
	})
	run("principal-policies", func(i int) error { _, err := n.PrincipalPolicies(ids[i]); return err })
	run("token-by-secret", func(int) error { _, err := n.TokenBySecret(secret); return err })
	run("cas-for", func(int) error { _, err := n.CAsFor(jit); return err })
	run("connect", func(i int) error {
		c, err := n.Certificate(ids[i])
		if err != nil || c.Status != StatusActive {
			return fmt.Errorf("certificate: %v", err)
		}
		thing := fmt.Sprintf("device-%04d", i)
		if ok, err := n.Attached(c.ID, thing); err != nil || !ok {
			return fmt.Errorf("attached: %v", err)
		}
		if _, err := n.Thing(thing); err != nil {
			return err
		}
		_, err = n.PrincipalPolicies(c.ID)
		return err
	})
}

// BenchmarkWrites measures CreateThing through the log one at a time,
// and with 64 callers at once (they share transactions: group commit).
func BenchmarkWrites(b *testing.B) {
	n := newNode(b, logtest.Open(b, 1))
	ctx := testCtx(b)
	seq := 0
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			seq++
			must[*Thing](b)(n.CreateThing(ctx, Thing{Name: fmt.Sprint("s", seq)}))
		}
	})
	b.Run("concurrent-64", func(b *testing.B) {
		var mu sync.Mutex
		b.SetParallelism(32) // 64 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				seq++
				name := fmt.Sprint("s", seq)
				mu.Unlock()
				if _, err := n.CreateThing(ctx, Thing{Name: name}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
