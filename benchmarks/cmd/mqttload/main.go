// Command mqttload is the MQTT load generator of iotpipe's benchmarks as a
// standalone binary: the same tool as `iotpipe bench mqtt`, buildable
// without the rest of iotpipe (benchmarks/run-mqtt.sh uses it so that
// Mosquitto and iotpipe are measured with one generator).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mqttload.Command(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
