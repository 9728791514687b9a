package eventlog

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kcat (librdkafka) reads the embedded log with its credentials, as the
// README's quickstart shows: librdkafka authenticates only when the
// broker lists SaslHandshake v0 among its versions (it then uses v1).
func TestKcatReadsTheEmbeddedLog(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: t.TempDir(), Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cl, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: l.Topics().Events, Key: []byte("sensor-123"), Value: []byte(`{"temperature":55}`)}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	c := l.Credentials()
	for _, tt := range []struct {
		name, password, want string
	}{
		{"its credentials", c.Password, "key=sensor-123 value={\"temperature\":55}"},
		{"a wrong password", "wrong", "SASL authentication error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := exec.CommandContext(ctx, "kcat", "-b", l.Brokers()[0],
				"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms="+c.Mechanism,
				"-X", "sasl.username="+c.User, "-X", "sasl.password="+tt.password,
				"-C", "-t", l.Topics().Events, "-e", "-m", "5", "-f", "key=%k value=%s\n").CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("kcat printed %q, want %q in it", out, tt.want)
			}
		})
	}
}
