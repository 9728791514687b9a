package reliability

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/encoding/json"
)

// LoadOptions says what a Load publishes. Zero fields take the defaults
// given.
type LoadOptions struct {
	// Addr is the MQTT address, host:port.
	Addr string
	// Devices is how many devices publish. Default 10.
	Devices int
	// Prefix names the devices <Prefix>-NN; each publishes telemetry to
	// <Prefix>/<client id>. Default "rel".
	Prefix string
	// Rate is the publishes per second of each device. Default 20.
	Rate float64
	// Window is how many publishes a device has unacknowledged at most;
	// when full, it skips its turns. Default 8.
	Window int
	// ShadowEvery makes every n-th publish of a device an update of its
	// classic shadow ($aws/things/<client id>/shadow/update) instead of
	// telemetry; 0: none.
	ShadowEvery int
	// Commands, when set, is a topic filter each device subscribes to
	// at QoS 1, with {id} replaced by its client id: what arrives is
	// counted by its command_id (Load.Commands).
	Commands string
	// Retry is the wait between two connection attempts of a device.
	// Default 100ms.
	Retry time.Duration
}

func (o *LoadOptions) defaults() {
	if o.Devices == 0 {
		o.Devices = 10
	}
	if o.Prefix == "" {
		o.Prefix = "rel"
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.Window == 0 {
		o.Window = 8
	}
	if o.Retry == 0 {
		o.Retry = 100 * time.Millisecond
	}
}

// Load is a QoS 1 load of MQTT 5 devices: each publishes at its rate with
// its id in the payload (TelemetryPayload, ShadowPayload), notes every
// answer in the Ledger, and when its connection breaks (a kill, a
// shutdown, a refusal) connects again until the load stops. A publish
// left unanswered by a broken connection is never sent again: the log
// may hold it or not, but it was never acknowledged.
type Load struct {
	opts   LoadOptions
	ledger *Ledger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connects   atomic.Int64
	mu         sync.Mutex
	commands   map[string]Received // by command_id
	disconnect map[byte]int        // DISCONNECT reason code -> times
	lastErr    map[string]string   // device -> its last connection error
}

// StartLoad starts the devices; their answers go to ledger.
func StartLoad(o LoadOptions, ledger *Ledger) *Load {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{opts: o, ledger: ledger, cancel: cancel,
		commands: map[string]Received{}, disconnect: map[byte]int{}, lastErr: map[string]string{}}
	for i := range o.Devices {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.device(ctx, fmt.Sprintf("%s-%02d", o.Prefix, i))
		}()
	}
	return l
}

// Stop stops the devices and waits until each has closed its
// connection (a publish unanswered by then stays unacknowledged).
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// Describe says the load in a few words, for a table.
func (l *Load) Describe() string {
	return fmt.Sprintf("%d devices × %g/s QoS 1", l.opts.Devices, l.opts.Rate)
}

// Devices returns the client ids of the devices.
func (l *Load) Devices() []string {
	out := make([]string, l.opts.Devices)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", l.opts.Prefix, i)
	}
	return out
}

// Connects is how many connections the devices opened (one each at the
// start, then one per reconnect).
func (l *Load) Connects() int64 { return l.connects.Load() }

// Received is how often a command reached a device, and when it first
// did.
type Received struct {
	Times int
	First time.Time
}

// Commands returns, by command_id (the topic for a message without
// one), what reached the devices on their Commands subscription.
func (l *Load) Commands() map[string]Received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.commands)
}

// Disconnects counts the DISCONNECTs the server sent, by reason code.
func (l *Load) Disconnects() map[byte]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.disconnect)
}

// Errors returns each device's last failed connection attempt.
func (l *Load) Errors() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.lastErr)
}

// device runs one device until ctx ends: connect, publish until the
// connection breaks, again.
func (l *Load) device(ctx context.Context, id string) {
	seq := 0
	for ctx.Err() == nil {
		c, code, err := Dial(l.opts.Addr, ConnectOptions{ClientID: id, Timeout: 5 * time.Second})
		if err == nil && code != 0 {
			err = fmt.Errorf("CONNACK 0x%02x", code)
		}
		if err != nil {
			l.noteErr(id, err)
			select {
			case <-ctx.Done():
			case <-time.After(l.opts.Retry):
			}
			continue
		}
		l.connects.Add(1)
		seq = l.session(ctx, c, id, seq)
		c.Close()
	}
}

func (l *Load) noteErr(id string, err error) {
	l.mu.Lock()
	l.lastErr[id] = err.Error()
	l.mu.Unlock()
}

// inflight is a device's unanswered publishes by packet id.
type inflight struct {
	mu  sync.Mutex
	ids map[uint16]string
}

// session publishes on c from seq on until the connection breaks or ctx
// ends, and returns the next seq.
func (l *Load) session(ctx context.Context, c *Conn, id string, seq int) int {
	broken := make(chan struct{})
	window := make(chan struct{}, l.opts.Window)
	fl := &inflight{ids: map[uint16]string{}}
	go func() { // the reader
		defer close(broken)
		for {
			pk, err := c.Read()
			if err != nil {
				return
			}
			switch pk.FixedHeader.Type {
			case packets.Puback:
				fl.mu.Lock()
				pid, ok := fl.ids[pk.PacketID]
				delete(fl.ids, pk.PacketID)
				fl.mu.Unlock()
				if ok {
					l.ledger.Answered(pid, pk.ReasonCode, time.Now())
					<-window
				}
			case packets.Publish:
				l.received(pk)
				if pk.FixedHeader.Qos > 0 {
					c.Write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
				}
			case packets.Disconnect:
				l.mu.Lock()
				l.disconnect[pk.ReasonCode]++
				l.mu.Unlock()
				return
			}
		}
	}()
	if l.opts.Commands != "" {
		if err := c.Subscribe(1, strings.ReplaceAll(l.opts.Commands, "{id}", id), 1); err != nil {
			return seq
		}
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / l.opts.Rate))
	defer tick.Stop()
	var pid uint16 = 1
	for {
		select {
		case <-ctx.Done():
			c.Close()
			<-broken
			return seq
		case <-broken:
			return seq
		case <-tick.C:
		}
		select {
		case window <- struct{}{}:
		default:
			continue // the window is full: skip this turn
		}
		topic, payload := l.opts.Prefix+"/"+id, TelemetryPayload(id, seq)
		if l.opts.ShadowEvery > 0 && seq%l.opts.ShadowEvery == l.opts.ShadowEvery-1 {
			topic, payload = "$aws/things/"+id+"/shadow/update", ShadowPayload(id, seq)
		}
		pid++
		if pid == 0 {
			pid = 2 // 1 is the SUBSCRIBE's
		}
		fl.mu.Lock()
		fl.ids[pid] = fmt.Sprintf("%s/%d", id, seq)
		fl.mu.Unlock()
		seq++
		l.ledger.Sent()
		if err := c.Publish(topic, 1, pid, payload); err != nil {
			c.Close()
			<-broken
			return seq
		}
	}
}

// received counts a command that reached a device.
func (l *Load) received(pk packets.Packet) {
	var cmd struct {
		ID string `json:"command_id"`
	}
	key := pk.TopicName
	if json.Unmarshal(pk.Payload, &cmd) == nil && cmd.ID != "" {
		key = cmd.ID
	}
	l.mu.Lock()
	r := l.commands[key]
	if r.Times == 0 {
		r.First = time.Now()
	}
	r.Times++
	l.commands[key] = r
	l.mu.Unlock()
}
