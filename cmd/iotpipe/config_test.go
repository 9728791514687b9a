package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// withoutEnv removes name from the environment for the test (TestMain
// sets IOTPIPE_BOOTSTRAP_TOKEN for the iotpipe processes the tests start).
func withoutEnv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}

func TestConfigPrecedence(t *testing.T) {
	withoutEnv(t, "IOTPIPE_BOOTSTRAP_TOKEN")
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("data_dir: from-file\nmqtt_addr: \":1\"\npartitions: 3\nretention: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IOTPIPE_MQTT_ADDR", ":2")
	t.Setenv("IOTPIPE_PARTITIONS", "5")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := loadConfig(fs, []string{"--config", file, "--partitions", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "from-file" || c.MQTTAddr != ":2" || c.Partitions != 7 || c.Retention != time.Hour || c.HTTPAddr != "127.0.0.1:8080" {
		t.Fatalf("precedence broken: %+v", c)
	}
}

func TestConfigExampleLoads(t *testing.T) {
	withoutEnv(t, "IOTPIPE_BOOTSTRAP_TOKEN")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := loadConfig(fs, []string{"--config", "../../deploy/iotpipe.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	def := defaultConfig()
	def.Node = c.Node
	if c != def {
		t.Fatalf("example file differs from the defaults it documents:\n%+v\n%+v", c, def)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("no_such_key: 1\n"), 0o644)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := loadConfig(fs, []string{"--config", bad}); err == nil {
		t.Fatal("unknown key accepted")
	}
	t.Setenv("IOTPIPE_PARTITIONS", "many")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := loadConfig(fs, nil); err == nil {
		t.Fatal("bad env value accepted")
	}
}
