package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// operator is the fleet's back office: one MQTT client that sets devices'
// desired shadow state, as an application would, so the shadow service
// answers the devices with deltas.
type operator struct {
	f      *fleet
	client paho.Client
	wg     sync.WaitGroup
}

func (f *fleet) newOperator(ctx context.Context) (*operator, error) {
	id := f.p.DevicePrefix + "operator"
	o := &operator{f: f}
	opts := f.clientOptions(id, 30*time.Second).SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second)
	o.client = paho.NewClient(opts)
	if err := wait(ctx, o.client.Connect(), 15*time.Second); err != nil {
		return nil, fmt.Errorf("the operator client %s cannot connect to %s: %w", id, f.cfg.Addr, err)
	}
	return o, nil
}

// set publishes a desired state for a device and counts it once the
// broker acknowledged it.
func (o *operator) set(device string, desired map[string]any) {
	b, err := json.Marshal(map[string]any{"state": map[string]any{"desired": desired}})
	if err != nil {
		o.f.noteError(fmt.Errorf("operator: encode desired state of %s: %w", device, err))
		return
	}
	tok := o.client.Publish("$aws/things/"+device+"/shadow/update", 1, false, b)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if err := waitSettle(tok, o.f.cfg.Drain); err != nil {
			o.f.noteError(fmt.Errorf("operator: set desired state of %s: %w", device, err))
			return
		}
		o.f.stats.desiredSet.Add(1)
	}()
}

func (o *operator) close() {
	o.wg.Wait()
	o.client.Disconnect(250)
}
