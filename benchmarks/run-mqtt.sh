#!/usr/bin/env bash
# Side-by-side MQTT benchmark: Mosquitto (Debian package, one subscriber on
# bench/#) and iotpipe (every PUBLISH into the log), measured in the same run
# with the same load generator (benchmarks/mqttload), 200-byte JSON payloads.
#
# Scenarios, per broker: QoS 1 at 100 and 1,000 connections, QoS 0 at 100 and
# 1,000 connections, and publish→PUBACK latency at a fixed 50k msg/s (QoS 1,
# 100 connections). With IOTPIPE_BIN also QoS 1 at 100 connections against a
# second iotpipe started with --sync-writes. Writes a markdown report with
# the figures and the ratios iotpipe/Mosquitto to $OUT/REPORT.md, and every
# run's JSON result beside it.
#
# Usage: benchmarks/run-mqtt.sh
#
# Environment (all optional):
#   IOTPIPE_ROLE   role the iotpipe binary runs: ingest (the MQTT front and the
#                  log: what the goals measure; default) or run (the whole
#                  pipeline, processors competing for the same 2 cores)
#   IOTPIPE_BIN    iotpipe binary; started as `$IOTPIPE_ROLE --dev` on free ports with a
#                  temporary data dir (and stopped at the end)
#   IOTPIPE_ADDR   host:port of an already-running iotpipe MQTT listener,
#                  instead of IOTPIPE_BIN
#   IOTPIPE_KAFKA  host:port of that iotpipe's log, to count records written
#                  (set automatically with IOTPIPE_BIN)
#   MOSQUITTO_BIN  mosquitto binary (default: mosquitto on PATH, else
#                  /usr/sbin/mosquitto)
#   MOSQUITTO_ADDR host:port of an already-running broker to measure instead
#                  of starting Mosquitto (its configuration is then yours)
#   SKIP_MOSQUITTO=1, SKIP_IOTPIPE=1   leave a side out
#   DURATION=8s WARMUP=2s   measurement window and warm-up of every run
#   CONNS="100 1000"        connection counts of the throughput runs
#   SIZE=200 WINDOW=64      payload bytes; QoS 1 in-flight per connection
#   LAT_RATE=50000 LAT_CONNS=100   the fixed-rate latency run
#   SUB_QOS=0               QoS of Mosquitto's subscriber (see README)
#   SYNC_RUN=1              also measure iotpipe --sync-writes (IOTPIPE_BIN)
#   MQTTLOAD_BIN, LOGCOUNT_BIN   prebuilt benchmarks/cmd/mqttload and
#                           benchmarks/cmd/logcount (default: go build them)
#   OUT=benchmarks/out      where REPORT.md and the JSON results go
#
# Default total runtime: about 2 minutes for Mosquitto plus iotpipe.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

IOTPIPE_ROLE=${IOTPIPE_ROLE:-ingest}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-"100 1000"}
SIZE=${SIZE:-200}
WINDOW=${WINDOW:-64}
LAT_RATE=${LAT_RATE:-50000}
LAT_CONNS=${LAT_CONNS:-100}
SUB_QOS=${SUB_QOS:-0}
SYNC_RUN=${SYNC_RUN:-1}
OUT=${OUT:-$here/out}

die() { echo "run-mqtt: $*" >&2; exit 1; }
log() { echo "run-mqtt: $*" >&2; }

command -v jq >/dev/null || die "jq is needed to read the generator's JSON (apt-get install -y jq)"

work=$(mktemp -d)
pids=()
cleanup() {
	local p
	for p in "${pids[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1,000 connections need 1,000 sockets in the generator and as many in the
# broker (each a child of this shell): raise the soft limit to the hard one.
maxconns=0
for c in $CONNS $LAT_CONNS; do [ "$c" -gt "$maxconns" ] && maxconns=$c; done
need=$((maxconns * 2 + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
	die "open files hard limit $hard is below the $need needed for $maxconns connections; raise it (ulimit -Hn) first"
fi
ulimit -n "$hard" 2>/dev/null || ulimit -n "$need"

# free_port sets the variable named $1 to a TCP port nothing listens on, below the ephemeral range
# (1,000 client connections hold that many local ports there) and not
# handed out before by this script.
eph_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
used_ports=" "
free_port() {
	local p span=$((eph_low - 12000))
	[ "$span" -gt 1000 ] || span=1000
	for _ in $(seq 200); do
		p=$((11000 + (RANDOM * 32768 + RANDOM) % span))
		case "$used_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports="$used_ports$p "
			printf -v "$1" %s "$p"
			return
		fi
	done
	die "no free port found"
}

# wait_port waits until host:port accepts connections.
wait_port() {
	local host=${1%:*} port=${1##*:} i
	for i in $(seq 300); do
		(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

gen=${MQTTLOAD_BIN:-}
if [ -z "$gen" ]; then
	gen=$work/mqttload
	log "building the load generator"
	(cd "$root" && go build -o "$gen" ./benchmarks/cmd/mqttload) || die "building benchmarks/cmd/mqttload failed"
fi
logcount=${LOGCOUNT_BIN:-}
if [ -z "$logcount" ]; then
	logcount=$work/logcount
	(cd "$root" && go build -o "$logcount" ./benchmarks/cmd/logcount) || die "building benchmarks/cmd/logcount failed"
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.err "$OUT"/*.records "$OUT"/*.samples "$OUT"/*.log

# ---------------------------------------------------------------- Mosquitto
mosq_pid=
start_mosquitto() { # $1 = set_tcp_nodelay true|false
	local bin=${MOSQUITTO_BIN:-}
	if [ -z "$bin" ]; then
		bin=$(command -v mosquitto || true)
		[ -z "$bin" ] && [ -x /usr/sbin/mosquitto ] && bin=/usr/sbin/mosquitto
	fi
	[ -n "$bin" ] || die "mosquitto not found: apt-get install -y mosquitto, or set MOSQUITTO_BIN or MOSQUITTO_ADDR"
	local port
	free_port port
	# Anonymous, no persistence. max_inflight_messages and max_queued_messages
	# bound what Mosquitto holds for the subscriber (beyond the queue it
	# drops, which the report shows as received < acked); set_tcp_nodelay
	# is off by default (Nagle batches PUBACKs: higher throughput) and on for
	# the latency run (otherwise Nagle adds milliseconds to every PUBACK).
	cat >"$work/mosquitto.conf" <<-EOF
		listener $port 127.0.0.1
		allow_anonymous true
		persistence false
		max_connections -1
		max_inflight_messages 1000
		max_queued_messages 100000
		set_tcp_nodelay $1
		log_dest stderr
		log_type error
		log_type warning
	EOF
	"$bin" -c "$work/mosquitto.conf" 2>>"$OUT/mosquitto.log" &
	mosq_pid=$!
	pids+=("$mosq_pid")
	wait_port "127.0.0.1:$port" || die "mosquitto did not start (see $OUT/mosquitto.log)"
	mosq_addr=127.0.0.1:$port
}
stop_mosquitto() {
	if [ -n "$mosq_pid" ]; then
		kill "$mosq_pid" 2>/dev/null || true
		wait "$mosq_pid" 2>/dev/null || true
		mosq_pid=
	fi
}

# ------------------------------------------------------------------ iotpipe
iot_pid=
start_iotpipe() { # $@ = extra flags
	local mqtt http kafka data
	free_port mqtt
	free_port http
	free_port kafka
	data=$(mktemp -d "$work/iotpipe.XXXX")
	"$IOTPIPE_BIN" "$IOTPIPE_ROLE" --dev --data-dir "$data" --mqtt-addr "127.0.0.1:$mqtt" \
		--http-addr "127.0.0.1:$http" --kafka-port "$kafka" --log-level warn "$@" \
		>>"$OUT/iotpipe.log" 2>&1 &
	iot_pid=$!
	pids+=("$iot_pid")
	wait_port "127.0.0.1:$mqtt" || die "iotpipe did not open its MQTT port (see $OUT/iotpipe.log)"
	if command -v curl >/dev/null; then
		for _ in $(seq 300); do
			curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
			sleep 0.1
		done
	fi
	iot_addr=127.0.0.1:$mqtt
	iot_kafka=127.0.0.1:$kafka
	iot_kafka_creds=$data/kafka/credentials.json
}
stop_iotpipe() { # SIGTERM, then SIGKILL after 10s: the data dir is thrown away
	if [ -n "$iot_pid" ]; then
		kill -TERM "$iot_pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$iot_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$iot_pid" 2>/dev/null || true
		wait "$iot_pid" 2>/dev/null || true
		iot_pid=
	fi
}

# sample_log appends "unix_ns records" lines for iotpipe.events on the
# Kafka address $1 to the file $2 every quarter second until killed.
sample_log() {
	exec "$logcount" --brokers "$1" --credentials "$iot_kafka_creds" --topic iotpipe.events --interval 250ms >>"$2" 2>>"$OUT/logcount.log"
}

# window_rate prints "records records/s" appended to the log during the
# measured window of result $2, from the samples in $1: between the first
# sample at or after the window's start and the last at or before its end.
window_rate() {
	local from to
	from=$(jq -r .window_start_unix_ns "$2") || return 1
	to=$(jq -r .window_end_unix_ns "$2") || return 1
	awk -v from="$from" -v to="$to" '
		$1 >= from && !t0 { t0 = $1; c0 = $2 }
		$1 <= to { t1 = $1; c1 = $2 }
		END { if (t0 && t1 > t0) printf "%d %.1f\n", c1 - c0, (c1 - c0) / ((t1 - t0) / 1e9); else exit 1 }
	' "$1"
}

# ---------------------------------------------------------------- the runs
# run NAME ADDR [generator flags...] writes $OUT/NAME.json.
run() {
	local name=$1 addr=$2
	shift 2
	log "$name: $*"
	if ! "$gen" --addr "$addr" --size "$SIZE" --window "$WINDOW" --json --quiet "$@" \
		>"$OUT/$name.json" 2>"$OUT/$name.err"; then
		log "$name: the generator reported a failure: $(tail -n 3 "$OUT/$name.err" | tr '\n' ' ')"
	fi
}

scenarios() { # $1 = side (mosquitto|iotpipe); $2 = address; rest = extra flags
	local side=$1 addr=$2 c
	shift 2
	for c in $CONNS; do
		run "$side-qos1-$c" "$addr" --conns "$c" --qos 1 --duration "$DURATION" --warmup "$WARMUP" "$@"
	done
	for c in $CONNS; do
		run "$side-qos0-$c" "$addr" --conns "$c" --qos 0 --duration "$DURATION" --warmup "$WARMUP" "$@"
	done
}

started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
if [ "${SKIP_MOSQUITTO:-}" != 1 ]; then
	sub=(--subscribe 'bench/#' --subscribe-qos "$SUB_QOS")
	if [ -n "${MOSQUITTO_ADDR:-}" ]; then
		wait_port "$MOSQUITTO_ADDR" || die "nothing listens on MOSQUITTO_ADDR=$MOSQUITTO_ADDR"
		scenarios mosquitto "$MOSQUITTO_ADDR" "${sub[@]}"
		run mosquitto-latency "$MOSQUITTO_ADDR" --conns "$LAT_CONNS" --qos 1 --rate "$LAT_RATE" --duration "$DURATION" --warmup "$WARMUP" "${sub[@]}"
	else
		# A fresh broker per run, so no queue carries over.
		for c in $CONNS; do
			for q in 1 0; do
				start_mosquitto false
				run "mosquitto-qos$q-$c" "$mosq_addr" --conns "$c" --qos "$q" --duration "$DURATION" --warmup "$WARMUP" "${sub[@]}"
				stop_mosquitto
			done
		done
		start_mosquitto true
		run mosquitto-latency "$mosq_addr" --conns "$LAT_CONNS" --qos 1 --rate "$LAT_RATE" --duration "$DURATION" --warmup "$WARMUP" "${sub[@]}"
		stop_mosquitto
	fi
fi

if [ "${SKIP_IOTPIPE:-}" != 1 ]; then
	iot_addr=${IOTPIPE_ADDR:-}
	iot_kafka=${IOTPIPE_KAFKA:-}
	if [ -z "$iot_addr" ]; then
		if [ -z "${IOTPIPE_BIN:-}" ]; then
			log "neither IOTPIPE_BIN nor IOTPIPE_ADDR is set: measuring Mosquitto only"
		else
			[ -x "$IOTPIPE_BIN" ] || die "IOTPIPE_BIN=$IOTPIPE_BIN is not an executable"
			start_iotpipe
		fi
	else
		wait_port "$iot_addr" || die "nothing listens on IOTPIPE_ADDR=$iot_addr"
	fi
	if [ -n "$iot_addr" ]; then
		for c in $CONNS; do
			run "iotpipe-qos1-$c" "$iot_addr" --conns "$c" --qos 1 --duration "$DURATION" --warmup "$WARMUP"
		done
		run iotpipe-latency "$iot_addr" --conns "$LAT_CONNS" --qos 1 --rate "$LAT_RATE" --duration "$DURATION" --warmup "$WARMUP"
		for c in $CONNS; do
			# A QoS 0 flood leaves a backlog in socket buffers that the
			# broker keeps ingesting after the run: give each QoS 0 run a
			# fresh iotpipe when we start it ourselves.
			if [ -n "$iot_pid" ]; then
				stop_iotpipe
				start_iotpipe
			fi
			sampler=
			if [ -n "$iot_kafka" ]; then
				sample_log "$iot_kafka" "$OUT/iotpipe-qos0-$c.samples" &
				sampler=$!
				pids+=("$sampler")
			fi
			run "iotpipe-qos0-$c" "$iot_addr" --conns "$c" --qos 0 --duration "$DURATION" --warmup "$WARMUP"
			if [ -n "$sampler" ]; then
				kill "$sampler" 2>/dev/null || true
				wait "$sampler" 2>/dev/null || true
				window_rate "$OUT/iotpipe-qos0-$c.samples" "$OUT/iotpipe-qos0-$c.json" >"$OUT/iotpipe-qos0-$c.records" || true
			fi
		done
		stop_iotpipe
		if [ "$SYNC_RUN" = 1 ] && [ -n "${IOTPIPE_BIN:-}" ] && [ -z "${IOTPIPE_ADDR:-}" ]; then
			start_iotpipe --sync-writes
			c=${CONNS%% *}
			run "iotpipe-sync-qos1-$c" "$iot_addr" --conns "$c" --qos 1 --duration "$DURATION" --warmup "$WARMUP"
			stop_iotpipe
		fi
	fi
fi
elapsed=$(($(date +%s) - started))

# --------------------------------------------------------------- the report
# field NAME JQ prints a field of NAME's result, or nothing.
field() { [ -s "$OUT/$1.json" ] && jq -r "$2 // empty" "$OUT/$1.json" 2>/dev/null || true; }
# rate formats msg/s: 123456.7 -> 123.5k
rate() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v >= 1e4) printf "%.1fk", v / 1e3; else printf "%.0f", v }' || echo "–"; }
ms() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { printf "%.2f ms", v / 1e6 }' || echo "–"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "–" }' || echo "–"; }

report=$OUT/REPORT.md
{
	echo "# MQTT benchmark: iotpipe vs Mosquitto"
	echo
	echo "Generated by \`benchmarks/run-mqtt.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || echo unknown)), in ${elapsed}s."
	echo "Load average before the runs: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') (anything above ~2 from other processes skews every figure)."
	echo "Generator: benchmarks/mqttload over real TCP on 127.0.0.1, $SIZE-byte JSON payloads, QoS 1 window $WINDOW per connection,"
	echo "$WARMUP warm-up then a $DURATION measurement window per run. The generator shares the CPUs with the broker."
	echo "Mosquitto: $({ "${MOSQUITTO_BIN:-/usr/sbin/mosquitto}" -h 2>&1 || true; } | head -n1), one subscriber on \`bench/#\` at QoS $SUB_QOS counting what it receives."
	echo "iotpipe: \`$IOTPIPE_ROLE --dev\`, every PUBLISH a record on \`iotpipe.events\` (QoS 1: PUBACK after the log acknowledged it)."
	echo
	echo "## Throughput"
	echo
	echo "QoS 1: messages acknowledged per second (Mosquitto: PUBACK once routed; iotpipe: PUBACK once in the log)."
	echo "QoS 0 (no acknowledgement): messages Mosquitto's subscriber received per second, and records iotpipe appended to"
	echo "\`iotpipe.events\` per second (end offsets sampled every 250 ms), both within the measured window; in brackets the rate at which the"
	echo "generator wrote into the broker's sockets (a broker buffers a QoS 0 flood and drains it after the window)."
	echo
	echo "| run | conns | Mosquitto | iotpipe | iotpipe/Mosquitto |"
	echo "|---|---:|---:|---:|---:|"
	for c in $CONNS; do
		m=$(field "mosquitto-qos1-$c" .acked_per_sec)
		mr=$(field "mosquitto-qos1-$c" .received_per_sec)
		i=$(field "iotpipe-qos1-$c" .acked_per_sec)
		echo "| QoS 1 acked/s | $c | $(rate "$m") (subscriber $(rate "$mr")) | $(rate "$i") | $(ratio "$i" "$m") |"
	done
	c=${CONNS%% *}
	s=$(field "iotpipe-sync-qos1-$c" .acked_per_sec)
	if [ -n "$s" ]; then
		echo "| QoS 1 acked/s, iotpipe \`--sync-writes\` | $c | | $(rate "$s") | $(ratio "$s" "$(field "mosquitto-qos1-$c" .acked_per_sec)") |"
	fi
	for c in $CONNS; do
		m=$(field "mosquitto-qos0-$c" .received_per_sec)
		ms_=$(field "mosquitto-qos0-$c" .sent_per_sec)
		is_=$(field "iotpipe-qos0-$c" .sent_per_sec)
		i=
		[ -s "$OUT/iotpipe-qos0-$c.records" ] && i=$(cut -d' ' -f2 "$OUT/iotpipe-qos0-$c.records")
		if [ -n "$i" ]; then ishow="$(rate "$i") records/s [$(rate "$is_")]"; else ishow="– [$(rate "$is_")]"; fi
		echo "| QoS 0 | $c | $(rate "$m") received/s [$(rate "$ms_")] | $ishow | $(ratio "$i" "$m") |"
	done
	echo
	for c in $CONNS; do
		if [ -s "$OUT/iotpipe-qos0-$c.records" ]; then
			n=$(cut -d' ' -f1 "$OUT/iotpipe-qos0-$c.records")
			total=$(field "iotpipe-qos0-$c" .total_sent)
			echo "- iotpipe QoS 0, $c connections: $n records appended to \`iotpipe.events\` in the window; $total PUBLISHes sent in the whole run."
		fi
	done
	for c in $CONNS; do
		for q in 1 0; do
			sent=$(field "mosquitto-qos$q-$c" .total_sent)
			got=$(field "mosquitto-qos$q-$c" .total_received)
			[ -n "$sent" ] && [ -n "$got" ] && [ "$sent" != "$got" ] &&
				echo "- Mosquitto QoS $q, $c connections: the subscriber received $got of $sent messages (beyond max_queued_messages Mosquitto drops)."
		done
	done
	echo
	echo "## Latency at a fixed rate (QoS 1, $LAT_CONNS connections, target $LAT_RATE msg/s)"
	echo
	echo "| broker | acked/s | p50 | p90 | p99 | p99.9 | max |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for side in mosquitto iotpipe; do
		[ -s "$OUT/$side-latency.json" ] || continue
		echo "| $side | $(rate "$(field "$side-latency" .acked_per_sec)") | $(ms "$(field "$side-latency" .latency.p50_ns)") | $(ms "$(field "$side-latency" .latency.p90_ns)") | $(ms "$(field "$side-latency" .latency.p99_ns)") | $(ms "$(field "$side-latency" .latency.p999_ns)") | $(ms "$(field "$side-latency" .latency.max_ns)") |"
	done
	echo
	echo "## Errors"
	echo
	bad=0
	for f in "$OUT"/*.json; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .json)
		e=$(jq -r '"\(.errors) failed connections, \(.unacked) unacknowledged"' "$f" 2>/dev/null || echo "unreadable result")
		case "$e" in "0 failed connections, 0 unacknowledged") ;; *) echo "- $n: $e"; bad=1 ;; esac
	done
	for f in "$OUT"/*.err; do
		[ -s "$f" ] && { echo "- $(basename "$f" .err): $(tail -n 1 "$f")"; bad=1; }
	done
	[ "$bad" = 0 ] && echo "None: every connection held and every QoS 1 message was acknowledged."
	echo
	echo "Per-run JSON results (\`iotpipe bench mqtt --json\` format) are beside this file."
} >"$report"
log "report: $report"
cat "$report"
