package ingest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/iotpipe/iotpipe/internal/tmpfstest"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	mochipebble "github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func hourExpiry(storage.Client) time.Duration { return time.Hour }

// loadAll loads the store as mochi does at start.
func loadAll(st *sessionStore) ([]storage.Client, []storage.Subscription, []storage.Message) {
	clients, _ := st.StoredClients()
	subs, _ := st.StoredSubscriptions()
	msgs, _ := st.StoredInflightMessages()
	return clients, subs, msgs
}

// A session directory written by mochi's own Pebble hook (what iotpipe
// used before) opens with its sessions, subscriptions and queued
// messages.
func TestSessionStoreReadsMochiStore(t *testing.T) {
	dir := t.TempDir()
	old := new(mochipebble.Hook)
	old.SetOpts(quiet, nil)
	if err := old.Init(&mochipebble.Options{Path: dir}); err != nil {
		t.Fatal(err)
	}
	ms := mqtt.New(&mqtt.Options{Logger: quiet})
	cl := ms.NewClient(nil, "tcp", "fridge-1", false)
	cl.Properties.ProtocolVersion = 4
	old.OnSessionEstablished(cl, packets.Packet{})
	old.OnSubscribed(cl, packets.Packet{Filters: packets.Subscriptions{{Filter: "cmd/fridge-1", Qos: 1}}}, []byte{1})
	old.OnQosPublish(cl, packets.Packet{PacketID: 7, TopicName: "cmd/fridge-1", Payload: []byte("defrost"),
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}}, 0, 0)
	old.OnDisconnect(cl, nil, false)
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}

	st, err := openSessionStore(dir, quiet, hourExpiry)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	clients, subs, msgs := loadAll(st)
	if len(clients) != 1 || clients[0].ID != "fridge-1" || len(subs) != 1 || subs[0].Filter != "cmd/fridge-1" ||
		len(msgs) != 1 || string(msgs[0].Payload) != "defrost" || msgs[0].PacketID != 7 {
		t.Fatalf("loaded clients %+v, subscriptions %+v, messages %+v", clients, subs, msgs)
	}
}

// Records of sessions that do not load (expired, clean, unreadable) go
// with their subscriptions and messages; the others load.
func TestSessionStoreDropsWhatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	st, err := openSessionStore(dir, quiet, hourExpiry)
	if err != nil {
		t.Fatal(err)
	}
	st.now = func() time.Time { return now }
	put := func(id string, c storage.Client, offline time.Duration) {
		st.set("client", clientKey(id), c)
		st.set("sub", subscriptionKey(id, "cmd/"+id), storage.Subscription{Client: id, Filter: "cmd/" + id, Qos: 1})
		st.set("msg", inflightKey(id, 1), storage.Message{Client: id, PacketID: 1, TopicName: "cmd/" + id})
		if offline > 0 {
			b := st.db.NewBatch()
			_ = b.Set([]byte(offlinePrefix+id), binary.BigEndian.AppendUint64(nil, uint64(now.Add(-offline).Unix())), nil)
			st.write("offline", b)
		}
	}
	put("fresh", storage.Client{ID: "fresh", ProtocolVersion: 4}, time.Minute)
	put("no-time", storage.Client{ID: "no-time", ProtocolVersion: 4}, 0) // written by mochi's hook: from now
	put("expired", storage.Client{ID: "expired", ProtocolVersion: 4}, 2*time.Hour)
	put("clean", storage.Client{ID: "clean", ProtocolVersion: 4, Clean: true}, 0)
	put("v5-zero", storage.Client{ID: "v5-zero", ProtocolVersion: 5}, 0)
	st.set("sub", subscriptionKey("nobody", "x"), storage.Subscription{Client: "nobody", Filter: "x"})
	b := st.db.NewBatch()
	_ = b.Set(clientKey("garbage"), []byte("{not json"), nil)
	st.write("garbage", b)
	if err := st.w.flush(); err != nil {
		t.Fatal(err)
	}

	clients, subs, msgs := loadAll(st)
	got := map[string]int{}
	for _, c := range clients {
		got["client "+c.ID]++
	}
	for _, s := range subs {
		got["sub "+s.Client]++
	}
	for _, m := range msgs {
		got["msg "+m.Client]++
	}
	want := map[string]int{"client fresh": 1, "client no-time": 1, "sub fresh": 1, "sub no-time": 1, "msg fresh": 1, "msg no-time": 1}
	if len(got) != len(want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("loaded %v, want %v", got, want)
		}
	}
	if until := st.loaded["fresh"]; !until.Equal(now.Add(59 * time.Minute)) {
		t.Errorf("fresh expires at %v, want an hour after it went offline", until)
	}
	st.Stop()
	for _, id := range []string{"expired", "clean", "v5-zero", "nobody", "garbage"} {
		if keys := storeKeys(t, dir, id); len(keys) > 0 {
			t.Errorf("store still holds %v", keys)
		}
	}
}

// Whatever the records hold, loading neither panics nor loads a record
// under another client's id.
func FuzzSessionStoreRecords(f *testing.F) {
	f.Add([]byte(`{"id":"a","protocolVersion":4}`), []byte(`{"client":"a","filter":"x"}`), []byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte(`{"clientId":"a"}`))
	f.Add([]byte(`{"id":"b"}`), []byte(`{"client":"a"}`), []byte{1}, []byte(`[]`))
	f.Add([]byte{}, []byte{0xff}, []byte{}, []byte(`{"clientId":""}`))
	f.Fuzz(func(t *testing.T, client, sub, offline, live []byte) {
		mem := vfs.NewMem()
		db, err := pebble.Open("s", &pebble.Options{FS: mem})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string][]byte{"CL_a": client, "SUB_a:x": sub, "IFM_a:1": sub, offlinePrefix + "a": offline, livePrefix + "a": live} {
			_ = db.Set([]byte(k), v, pebble.NoSync)
		}
		db.Close()
		st, err := openSessionStoreFS("s", mem, quiet, hourExpiry)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Stop()
		clients, subs, msgs := loadAll(st)
		st.live()
		for _, s := range subs {
			if _, ok := st.loaded[s.Client]; !ok {
				t.Fatalf("subscription of %q loaded without its client (%v)", s.Client, clients)
			}
		}
		for _, m := range msgs {
			if _, ok := st.loaded[m.Client]; !ok {
				t.Fatalf("message of %q loaded without its client", m.Client)
			}
		}
	})
}

// A write Pebble cannot make (its disk full past the store's own guard)
// fails the store, not the process: later writes are dropped and
// counted, and Stop returns.
func TestSessionStoreSurvivesPebbleFailure(t *testing.T) {
	dir := tmpfstest.Mount(t, 8)
	st, err := openSessionStore(dir, quiet, hourExpiry)
	if err != nil {
		t.Fatal(err)
	}
	st.w.space.Min = 0 // no guard: let Pebble meet the full disk
	val := make([]byte, 64<<10)
	for i := 0; i < 1000 && !st.w.failed.Load(); i++ {
		rand.Read(val)
		b := st.db.NewBatch()
		_ = b.Set([]byte(fmt.Sprint("k", i)), val, nil)
		_ = st.w.submit("test", b, true, true)
	}
	if !st.w.failed.Load() {
		t.Fatal("64 MiB written to an 8 MiB disk without a failure")
	}
	before := counterValue(st.w.dropped.WithLabelValues("failed"))
	st.OnSubscribed(mqtt.New(&mqtt.Options{Logger: quiet}).NewClient(nil, "tcp", "c", false),
		packets.Packet{Filters: packets.Subscriptions{{Filter: "x", Qos: 1}}}, []byte{1})
	if err := st.w.flush(); err != errStoreFailed {
		t.Fatalf("flush after the failure: %v", err)
	}
	if after := counterValue(st.w.dropped.WithLabelValues("failed")); after < before+1 {
		t.Errorf("dropped writes %v -> %v", before, after)
	}
	done := make(chan error)
	go func() { done <- st.Stop() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop hangs after a failure")
	}
}
