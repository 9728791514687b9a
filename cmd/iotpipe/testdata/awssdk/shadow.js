// AWS IoT's own device SDK for JavaScript (aws-iot-device-sdk, v1) runs
// its thingShadow flow against iotpipe as it would against AWS IoT Core:
// only the endpoint and the CA differ. It registers the thing's shadow,
// updates the desired state, answers the delta by reporting it, then
// gets the shadow. Each event is a JSON line on stdout; exit status 0
// when the flow completed, 1 on an error or an operation timeout, 2
// when it did not complete in time.
//
//   node shadow.js HOST PORT CA_FILE CERT_FILE KEY_FILE THING
'use strict';
const awsIot = require('aws-iot-device-sdk');

const [host, port, caPath, certPath, keyPath, thing] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const fail = (code, o) => { say(o); process.exit(code); };
setTimeout(() => fail(2, { event: 'deadline' }), 90000).unref();

// As AWS's examples/thing-example.js builds it.
const shadows = awsIot.thingShadow({
  keyPath: keyPath,
  certPath: certPath,
  caPath: caPath,
  clientId: thing,
  host: host,
  port: Number(port),
});

const desired = { color: 'green', brightness: 7 };
let step = 'update-desired';
let reported = false;
let finished = false; // the flow completed
let delta = null; // the delta's state, which may come before update/accepted

// report answers the delta once the desired update is accepted (the SDK
// runs one operation per thing at a time).
const report = () => {
  if (step !== 'wait-delta' || delta === null) return;
  step = 'update-reported';
  // Report what was asked for: the device has applied it.
  if (shadows.update(thing, { state: { reported: delta } }) === null) fail(1, { event: 'update-busy' });
};

shadows.on('connect', () => {
  say({ event: 'connect' });
  if (reported) return; // a reconnect: the flow goes on
  shadows.register(thing, {}, (err, failed) => {
    if (err || failed) fail(1, { event: 'register-failed', error: String(err), failed: failed });
    say({ event: 'registered' });
    if (shadows.update(thing, { state: { desired: desired } }) === null) fail(1, { event: 'update-busy' });
  });
});

shadows.on('delta', (name, stateObject) => {
  say({ event: 'delta', thing: name, state: stateObject.state, version: stateObject.version });
  if (delta === null) {
    delta = stateObject.state;
    report();
  }
});

shadows.on('status', (name, stat, clientToken, stateObject) => {
  say({ event: 'status', thing: name, status: stat, step: step, state: stateObject.state, version: stateObject.version });
  if (stat !== 'accepted') fail(1, { event: 'rejected', step: step, answer: stateObject });
  switch (step) {
    case 'update-desired':
      step = 'wait-delta';
      report();
      break;
    case 'update-reported':
      reported = true;
      step = 'get';
      if (shadows.get(thing) === null) fail(1, { event: 'get-busy' });
      break;
    case 'get':
      say({ event: 'done' });
      finished = true;
      shadows.end(false, () => process.exit(0));
      break;
  }
});

shadows.on('timeout', (name, clientToken) => fail(1, { event: 'timeout', thing: name, step: step }));
// Once the flow is done, the connection's teardown may race the server's
// close (a reset after DISCONNECT): not a failure of the flow.
shadows.on('error', (err) => {
  if (finished) {
    say({ event: 'error-after-done', error: String(err) });
    process.exit(0);
  }
  fail(1, { event: 'error', error: String(err) });
});
shadows.on('close', () => say({ event: 'close' }));
