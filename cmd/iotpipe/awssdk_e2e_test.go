package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/schemas"
)

// awsDeviceSDK is the npm package of AWS IoT's device SDK for
// JavaScript (v1, with thingShadow), pinned.
const awsDeviceSDK = "aws-iot-device-sdk@2.2.16"

// npmPackage installs pkg (name@version) once into the user's cache,
// ~/.cache/iotpipe/npm/<name>-<version>, and returns its node_modules
// directory. The install goes to a temporary directory renamed into
// place, so concurrent tests and interrupted installs leave no half
// package.
func npmPackage(t *testing.T, pkg string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(cache, "iotpipe", "npm")
	dir := filepath.Join(root, strings.ReplaceAll(strings.TrimPrefix(pkg, "@"), "@", "-"))
	mods := filepath.Join(dir, "node_modules")
	name := pkg[:strings.LastIndex(pkg, "@")]
	if _, err := os.Stat(filepath.Join(mods, name, "package.json")); err == nil {
		return mods
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, ".install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "--no-package-lock", pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s (node and npm are needed for this test): %v\n%s", pkg, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(mods, name, "package.json")); serr != nil {
			t.Fatalf("moving the npm install into %s: %v", dir, err)
		}
	}
	return mods
}

// sdkEvent is one line of testdata/awssdk/shadow.js.
type sdkEvent struct {
	Event  string          `json:"event"`
	Status string          `json:"status"`
	Step   string          `json:"step"`
	State  json.RawMessage `json:"state"`
}

// TestAWSDeviceSDKShadow: AWS IoT's own device SDK (aws-iot-device-sdk
// for JavaScript, thingShadow) connects to iotpipe's MQTT over TLS with
// a certificate from iotpipe's CA and runs the shadow flow of AWS's
// examples unchanged but for the endpoint and the CA: register, update
// desired, receive the delta, report it, get. iotpipe runs without
// --dev: the certificate authenticates, the policy decides each
// subscription and publish, and the shadow ends reported as desired
// with the device's principal on its records.
func TestAWSDeviceSDKShadow(t *testing.T) {
	mods := npmPackage(t, awsDeviceSDK)
	in := newInstance(t)
	mqtts := freePort(t)
	in.start("--dev=false", "--mqtts-addr", fmt.Sprintf("127.0.0.1:%d", mqtts))

	dir := t.TempDir()
	doc := filepath.Join(dir, "shadow-device.json")
	// The policy AWS documents for a device using its own shadow.
	if err := os.WriteFile(doc, []byte(`{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
	  {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
	  {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
	  {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const thing = "sdk-lamp-1"
	in.cli("policies", "create", "shadow-device", doc)
	in.cli("things", "create", thing)
	certs := filepath.Join(dir, "certs")
	in.cli("certs", "create", "--thing", thing, "--out", certs, "--policy", "shadow-device")
	files := pki.DeviceFiles{Cert: filepath.Join(certs, thing+".crt"), Key: filepath.Join(certs, thing+".key"), CA: filepath.Join(certs, pki.CACertFile)}
	certPEM, err := os.ReadFile(files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseDevicePEM(certPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certID := pki.ID(leaf.Raw)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script, err := filepath.Abs(filepath.Join("testdata", "awssdk", "shadow.js"))
	if err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, "node", script, "127.0.0.1", strconv.Itoa(mqtts), files.CA, files.Cert, files.Key, thing)
	node.Env = append(os.Environ(), "NODE_PATH="+mods)
	var stdout, stderr bytes.Buffer
	node.Stdout, node.Stderr = &stdout, &stderr
	runErr := node.Run()
	var events []sdkEvent
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev sdkEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("shadow.js printed %q: %v", line, err)
		}
		events = append(events, ev)
	}
	if runErr != nil {
		t.Fatalf("the SDK's shadow flow failed: %v\nstdout:\n%s\nstderr:\n%s", runErr, stdout.String(), stderr.String())
	}

	// The flow, as the SDK saw it.
	want := map[string]any{"color": "green", "brightness": float64(7)}
	var sawDelta, sawGet, done bool
	for _, ev := range events {
		done = done || ev.Event == "done"
		var st map[string]any
		_ = json.Unmarshal(ev.State, &st)
		switch {
		case ev.Event == "delta":
			sawDelta = reflect.DeepEqual(st, want)
			if !sawDelta {
				t.Errorf("delta state %s, want %v", ev.State, want)
			}
		case ev.Event == "status" && ev.Step == "get":
			sawGet = true
			if !reflect.DeepEqual(st["desired"], want) || !reflect.DeepEqual(st["reported"], want) || st["delta"] != nil {
				t.Errorf("the shadow the SDK got: %s; want desired and reported %v and no delta", ev.State, want)
			}
		}
	}
	if !sawDelta || !sawGet || !done {
		t.Errorf("the SDK's events lack the delta, the get or the end:\n%s", stdout.String())
	}

	// The shadow, as iotpipe keeps it.
	resp, err := http.Get(in.url("/things/" + thing + "/shadow"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc2 struct {
		State map[string]any `json:"state"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &doc2) != nil || !reflect.DeepEqual(doc2.State["reported"], want) || doc2.State["delta"] != nil {
		t.Errorf("GET shadow: %d %s; want reported %v and no delta", resp.StatusCode, body, want)
	}

	// The device's publishes are on the log under its certificate, keyed
	// by its thing.
	var updates int
	for _, r := range in.readEvents() {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil || env.Type != schemas.EventPublish || env.ClientID != thing {
			continue
		}
		if env.Principal != certID || env.Thing != thing || string(r.Key) != thing {
			t.Errorf("a publish of the SDK on %s: principal %q thing %q key %q; want %s, %s", env.Topic, env.Principal, env.Thing, r.Key, certID, thing)
		}
		if env.Topic == "$aws/things/"+thing+"/shadow/update" {
			updates++
		}
	}
	if updates != 2 {
		t.Errorf("%d shadow updates of the SDK on the log, want 2 (desired, reported)", updates)
	}
}

// cli runs an iotpipe CLI command against in's API, with the admin
// token it finds in in's data directory, and returns its stdout; a
// failure ends the test.
func (in *instance) cli(args ...string) string {
	in.t.Helper()
	code, out, errOut := runIotpipe(in.t, append(args, "--api", in.url(""), "--data-dir", in.dataDir)...)
	if code != 0 {
		in.t.Fatalf("iotpipe %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}
