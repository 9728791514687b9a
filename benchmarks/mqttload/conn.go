package mqttload

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// dialMQTT opens a TCP connection (TLS with cfg.TLS), sends CONNECT and
// waits for an accepting CONNACK, all within cfg.DialTimeout. The
// returned reader wraps conn.
func dialMQTT(ctx context.Context, cfg *Config, clientID string, readBuf int) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing %s: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		conf := cfg.TLS
		if conf.ServerName == "" && !conf.InsecureSkipVerify {
			// As tls.Dial: the certificate must name the host dialed.
			host, _, _ := net.SplitHostPort(cfg.Addr)
			conf = conf.Clone()
			conf.ServerName = host
		}
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("TLS handshake with %s: %w", cfg.Addr, err)
		}
		conn = tc
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		_ = conn.Close()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	pkt, err := connectPacket(clientID, cfg.Username, cfg.Password, uint16(cfg.Keepalive/time.Second))
	if err != nil {
		return fail(fmt.Errorf("encoding CONNECT for %s: %w", clientID, err))
	}
	if _, err := conn.Write(pkt); err != nil {
		return fail(fmt.Errorf("sending CONNECT for %s to %s: %w", clientID, cfg.Addr, err))
	}
	r := bufio.NewReaderSize(conn, readBuf)
	// Check the first byte before trusting a length: a server speaking
	// another protocol would otherwise leave us waiting for a body.
	first, err := r.Peek(1)
	if err != nil {
		return fail(fmt.Errorf("reading CONNACK for %s from %s (is it an MQTT broker?): %w", clientID, cfg.Addr, err))
	}
	if first[0] != typeConnack<<4 {
		hint := ""
		if first[0] >= 'A' && first[0] <= 'z' {
			hint = fmt.Sprintf(" (%q: the server answers in text; is it an HTTP or other non-MQTT port?)", string(first[0]))
		}
		return fail(fmt.Errorf("connecting %s to %s: %w: expected CONNACK, got first byte 0x%02x%s", clientID, cfg.Addr, errMalformed, first[0], hint))
	}
	header, body, err := packetReader{r}.next()
	if err != nil {
		return fail(fmt.Errorf("reading CONNACK for %s from %s (is it an MQTT broker?): %w", clientID, cfg.Addr, err))
	}
	if err := parseConnack(header, body); err != nil {
		return fail(fmt.Errorf("connecting %s to %s: %w", clientID, cfg.Addr, err))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, r, nil
}
