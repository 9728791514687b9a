package ingest

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/encoding/json"
)

// sessionStore keeps MQTT sessions in Pebble (Options.SessionDir) as a
// mochi storage hook. It uses the key layout and records of mochi's own
// Pebble hook, so a session directory written by it opens as is, and adds
// what iotpipe needs of sessions:
//
//   - when each persistent session went offline ("IOT_OFF_<id>"), so a
//     session expires from its disconnect time across restarts; sessions
//     that expired while the node was down are deleted at start instead of
//     loaded;
//   - every key of a session goes with it (mochi's hook left its
//     subscriptions and in-flight messages behind, and loaded them again);
//   - which connections are live ("IOT_LIVE_<id>"), so a start after a
//     crash can write the disconnected events the crash never wrote.
type sessionStore struct {
	mqtt.HookBase
	db  *pebble.DB
	log *slog.Logger
	// expiry is how long a stored session outlives its connection.
	expiry func(c storage.Client) time.Duration
	now    func() time.Time

	// w writes; mu guards closed against the reads (Stop takes it
	// exclusively).
	w      *storeWriter
	mu     sync.RWMutex
	closed bool
	// loaded are the clients StoredClients handed to mochi, with when
	// each expires (filled at start, read by the server after Serve).
	loaded map[string]time.Time
}

const (
	offlinePrefix = "IOT_OFF_"
	livePrefix    = "IOT_LIVE_"
)

func clientKey(id string) []byte { return []byte(storage.ClientKey + "_" + id) }
func subscriptionKey(id, filter string) []byte {
	return []byte(storage.SubscriptionKey + "_" + id + ":" + filter)
}
func inflightKey(id string, packetID uint16) []byte {
	return []byte(storage.InflightKey + "_" + id + ":" + strconv.FormatUint(uint64(packetID), 10))
}
func retainedKey(topic string) []byte { return []byte(storage.RetainedKey + "_" + topic) }

// openSessionStore opens (or creates) the store in dir.
func openSessionStore(dir string, log *slog.Logger, expiry func(storage.Client) time.Duration) (*sessionStore, error) {
	return openSessionStoreFS(dir, nil, log, expiry)
}

// openSessionStoreFS is openSessionStore on fs (nil: the disk).
func openSessionStoreFS(dir string, fs vfs.FS, log *slog.Logger, expiry func(storage.Client) time.Duration) (st *sessionStore, err error) {
	pl := &pebbleLogger{log: log}
	defer func() { // Pebble fails an Open on a bad directory through Fatalf
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("open mqtt session store %s: %w", dir, f)
		}
	}()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pl, FS: fs})
	if err != nil {
		return nil, fmt.Errorf("open mqtt session store %s: %w", dir, err)
	}
	pl.w = newStoreWriter(db, dir, log)
	return &sessionStore{db: db, log: log, expiry: expiry, now: time.Now, loaded: map[string]time.Time{}, w: pl.w}, nil
}

func (h *sessionStore) ID() string { return "iotpipe-session-store" }

func (h *sessionStore) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnRetainedExpired, mqtt.StoredClients, mqtt.StoredSubscriptions,
		mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return true
	}
	return false
}

// Stop writes what is queued and closes the store; later writes are
// dropped. A failed store is left open (Pebble may hold its locks).
func (h *sessionStore) Stop() error {
	h.w.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.w.failed.Load() {
		return nil
	}
	return h.db.Close()
}

// write queues b.
func (h *sessionStore) write(what string, b *pebble.Batch) { _ = h.w.submit(what, b, false, false) }

func (h *sessionStore) set(what string, key []byte, v encoding.BinaryMarshaler) {
	val, err := v.MarshalBinary()
	if err != nil {
		h.log.Error("mqtt session store: encode", "what", what, "err", err)
		return
	}
	b := h.db.NewBatch()
	_ = b.Set(key, val, nil)
	h.write(what, b)
}

func (h *sessionStore) del(what string, keys ...[]byte) {
	b := h.db.NewBatch()
	for _, k := range keys {
		_ = b.Delete(k, nil)
	}
	h.write(what, b)
}

// clientRecord is cl as mochi's storage records it.
func clientRecord(cl *mqtt.Client) storage.Client {
	props := cl.Properties.Props.Copy(false)
	return storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod, AuthenticationData: props.AuthenticationData,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
}

// OnSessionEstablished stores the client; its session is online again.
func (h *sessionStore) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	rec := clientRecord(cl)
	val, _ := rec.MarshalBinary()
	b := h.db.NewBatch()
	_ = b.Set(clientKey(cl.ID), val, nil)
	_ = b.Delete([]byte(offlinePrefix+cl.ID), nil)
	h.write("client", b)
}

// OnWillSent stores the client without its delivered will.
func (h *sessionStore) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline {
		rec := clientRecord(cl)
		h.set("client", clientKey(cl.ID), rec)
	}
}

// OnDisconnect deletes a session that ends with its connection (mochi
// then unsubscribes and clears it, which deletes the rest) and records
// when a persistent one went offline. A connection taken over leaves the
// record to its successor.
func (h *sessionStore) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Inline || cl.Net.Conn == nil || isTakeover(cl) {
		return
	}
	if expire {
		h.del("client", clientKey(cl.ID), []byte(offlinePrefix+cl.ID))
		return
	}
	rec := clientRecord(cl)
	val, _ := rec.MarshalBinary()
	b := h.db.NewBatch()
	_ = b.Set(clientKey(cl.ID), val, nil)
	_ = b.Set([]byte(offlinePrefix+cl.ID), binary.BigEndian.AppendUint64(nil, uint64(h.now().Unix())), nil)
	h.write("client", b)
}

func (h *sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		h.set("subscription", subscriptionKey(cl.ID, f.Filter), storage.Subscription{
			ID: string(subscriptionKey(cl.ID, f.Filter)), T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i],
			Filter: f.Filter, Identifier: f.Identifier, NoLocal: f.NoLocal,
			RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		})
	}
}

func (h *sessionStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	keys := make([][]byte, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		keys = append(keys, subscriptionKey(cl.ID, f.Filter))
	}
	h.del("subscription", keys...)
}

// message is pk as mochi's storage records it.
func message(key []byte, typ, client string, pk packets.Packet, sent int64) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		ID: string(key), T: typ, Client: client, Origin: pk.Origin, PacketID: pk.PacketID,
		FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload, Sent: sent, Created: pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, TopicAlias: props.TopicAlias, User: props.User,
		},
	}
}

func (h *sessionStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.del("retained", retainedKey(pk.TopicName))
		return
	}
	h.set("retained", retainedKey(pk.TopicName), message(retainedKey(pk.TopicName), storage.RetainedKey, cl.ID, pk, 0))
}

func (h *sessionStore) OnRetainedExpired(filter string) { h.del("retained", retainedKey(filter)) }

func (h *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	k := inflightKey(cl.ID, pk.PacketID)
	h.set("in-flight", k, message(k, storage.InflightKey, cl.ID, pk, sent))
}

func (h *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.del("in-flight", inflightKey(cl.ID, pk.PacketID))
}

func (h *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.del("in-flight", inflightKey(cl.ID, pk.PacketID))
}

// deleteClient deletes every key of client id's session.
func (h *sessionStore) deleteClient(id string) {
	_ = h.w.flush() // the session's latest keys are visible to the scans
	b := h.db.NewBatch()
	_ = b.Delete(clientKey(id), nil)
	_ = b.Delete([]byte(offlinePrefix+id), nil)
	h.scan(storage.SubscriptionKey+"_"+id+":", func(k, v []byte) {
		var s storage.Subscription
		if s.UnmarshalBinary(v) == nil && s.Client == id {
			_ = b.Delete(k, nil)
		}
	})
	h.scan(storage.InflightKey+"_"+id+":", func(k, v []byte) {
		var m storage.Message
		if m.UnmarshalBinary(v) == nil && m.Client == id {
			_ = b.Delete(k, nil)
		}
	})
	h.write("expired session", b)
}

// scan calls fn for every key with prefix (the key and value are valid
// during the call only).
func (h *sessionStore) scan(prefix string, fn func(k, v []byte)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed || h.w.failed.Load() {
		return
	}
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upperBound([]byte(prefix))})
	if err != nil {
		h.log.Error("mqtt session store: read", "prefix", prefix, "err", err)
		return
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key(), it.Value())
	}
}

// upperBound is the least key greater than every key with prefix p.
func upperBound(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i]++; end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// StoredClients returns the persistent sessions still valid now and
// deletes the others: sessions past their expiry (counted from when they
// went offline, or from now for sessions recorded without that time) and
// sessions that end with their connection (left by a crash).
func (h *sessionStore) StoredClients() ([]storage.Client, error) {
	now := h.now()
	var out []storage.Client
	var gone []string
	h.scan(storage.ClientKey+"_", func(k, v []byte) {
		var c storage.Client
		if err := c.UnmarshalBinary(v); err != nil {
			h.log.Warn("mqtt session store: unreadable client record dropped", "key", string(k), "err", err)
			gone = append(gone, string(k[len(storage.ClientKey)+1:]))
			return
		}
		if c.Clean && c.ProtocolVersion < 5 || c.ProtocolVersion == 5 && c.Properties.SessionExpiryInterval == 0 {
			gone = append(gone, c.ID)
			return
		}
		out = append(out, c)
	})
	offline := map[string]time.Time{}
	h.scan(offlinePrefix, func(k, v []byte) {
		if len(v) == 8 {
			offline[string(k[len(offlinePrefix):])] = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
		}
	})
	kept := out[:0]
	for _, c := range out {
		since, ok := offline[c.ID]
		if !ok {
			since = now
		}
		until := since.Add(h.expiry(c))
		if !now.Before(until) {
			gone = append(gone, c.ID)
			continue
		}
		h.loaded[c.ID] = until
		kept = append(kept, c)
	}
	for _, id := range gone {
		h.deleteClient(id)
	}
	if len(gone) > 0 {
		h.log.Info("mqtt sessions expired while the node was down removed", "count", len(gone))
	}
	return kept, nil
}

// StoredSubscriptions returns the subscriptions of the sessions loaded and
// deletes those of no loaded session.
func (h *sessionStore) StoredSubscriptions() ([]storage.Subscription, error) {
	return load(h, storage.SubscriptionKey+"_", func(s *storage.Subscription) string { return s.Client })
}

// StoredInflightMessages returns the in-flight messages of the sessions
// loaded and deletes those of no loaded session.
func (h *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	return load(h, storage.InflightKey+"_", func(m *storage.Message) string { return m.Client })
}

// StoredRetainedMessages returns the retained messages.
func (h *sessionStore) StoredRetainedMessages() ([]storage.Message, error) {
	return load[storage.Message](h, storage.RetainedKey+"_", nil)
}

// load decodes the records under prefix. With client set, it keeps those
// of the sessions loaded and deletes the others (orphans, as mochi's own
// hook left them); unreadable records are deleted too.
func load[T any, PT interface {
	*T
	UnmarshalBinary([]byte) error
}](h *sessionStore, prefix string, client func(PT) string) ([]T, error) {
	var out []T
	var drop [][]byte
	h.scan(prefix, func(k, v []byte) {
		var r T
		if err := PT(&r).UnmarshalBinary(v); err == nil && (client == nil || h.isLoaded(client(&r))) {
			out = append(out, r)
			return
		}
		drop = append(drop, append([]byte(nil), k...))
	})
	if len(drop) > 0 {
		h.del("orphaned or unreadable records", drop...)
	}
	return out, nil
}

func (h *sessionStore) isLoaded(id string) bool {
	_, ok := h.loaded[id]
	return ok
}

// liveSession is a connection the store knows to be live: what its
// disconnected event needs if the node stops without writing one.
type liveSession struct {
	ClientID  string `json:"clientId"`
	Session   string `json:"session"`
	Principal string `json:"principal"`
	Thing     string `json:"thing,omitempty"`
	IP        string `json:"ip,omitempty"`
	Since     int64  `json:"since"` // unix ms
}

// setLive records a live connection, synced before it returns: the
// connection's packets are read only after (mochi starts its read loop
// once the session hooks ran), so anything it got into the log has a live
// record a crash leaves behind. The cost is one sync per connect, shared
// by the connects that arrive together.
func (h *sessionStore) setLive(ls liveSession) {
	val, err := json.Marshal(ls)
	if err != nil {
		return
	}
	b := h.db.NewBatch()
	_ = b.Set([]byte(livePrefix+ls.ClientID), val, nil)
	if err := h.w.submit("live session", b, true, true); err != nil {
		h.log.Warn("mqtt session store: live connection not recorded (a crash now would write no disconnected event for it)", "client", ls.ClientID, "err", err)
	}
}

// deleteLive forgets live connections: synced when sync is set (the
// disconnected events written for them at start), else within syncEvery
// (a crash sooner writes a second disconnected event for a connection
// that had ended).
func (h *sessionStore) deleteLive(sync bool, ids ...string) {
	b := h.db.NewBatch()
	for _, id := range ids {
		_ = b.Delete([]byte(livePrefix+id), nil)
	}
	_ = h.w.submit("live session", b, sync, sync)
}

// live returns the connections recorded live (at start: those a crash
// left).
func (h *sessionStore) live() []liveSession {
	var out []liveSession
	h.scan(livePrefix, func(k, v []byte) {
		var ls liveSession
		if err := json.Unmarshal(v, &ls); err == nil && ls.ClientID != "" {
			out = append(out, ls)
		}
	})
	return out
}
