// Command mochibroker runs a plain mochi-mqtt broker (allow-all auth,
// default routing, no storage) on one TCP address. It is the baseline that
// shows what the load generator reaches against a multi-threaded Go broker
// with nothing behind it: iotpipe's MQTT front is mochi plus the log.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx))
}

func run(ctx context.Context) int {
	fs := flag.NewFlagSet("mochibroker", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1883", "MQTT TCP listen `address`")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		fmt.Fprintf(os.Stderr, "mochibroker: adding the allow-all hook: %v\n", err)
		return 1
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		fmt.Fprintf(os.Stderr, "mochibroker: listening on %s: %v\n", *addr, err)
		return 1
	}
	if err := srv.Serve(); err != nil {
		fmt.Fprintf(os.Stderr, "mochibroker: %v\n", err)
		return 1
	}
	<-ctx.Done()
	_ = srv.Close()
	return 0
}
