package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/encoding/json"
)

// presenceEvent is AWS IoT's lifecycle message, published to
// $aws/events/presence/connected|disconnected/{clientId}.
type presenceEvent struct {
	ClientID                  string `json:"clientId"`
	Timestamp                 int64  `json:"timestamp"`
	EventType                 string `json:"eventType"`
	SessionIdentifier         string `json:"sessionIdentifier"`
	PrincipalIdentifier       string `json:"principalIdentifier"`
	ClientInitiatedDisconnect *bool  `json:"clientInitiatedDisconnect,omitempty"`
	DisconnectReason          string `json:"disconnectReason,omitempty"`
	// DisconnectDetail (iotpipe's) says what ended a session the server
	// ended for its credentials, e.g. "certificate REVOKED".
	DisconnectDetail string `json:"disconnectDetail,omitempty"`
	IPAddress        string `json:"ipAddress,omitempty"`
	VersionNumber    int64  `json:"versionNumber"`
}

func (p *presenceEvent) marshal() ([]byte, error) { return json.Marshal(p) }

func presence(cl *mqtt.Client, typ schemas.EventType, session, principalID string, cause error, now time.Time) *presenceEvent {
	ev := &presenceEvent{
		ClientID:            cl.ID,
		Timestamp:           now.UnixMilli(),
		EventType:           string(typ),
		SessionIdentifier:   session,
		PrincipalIdentifier: principalID,
	}
	if host, _, err := net.SplitHostPort(cl.Net.Remote); err == nil {
		ev.IPAddress = host
	}
	if typ == schemas.EventDisconnected {
		reason, byClient := disconnectReason(cl, cause)
		ev.DisconnectReason = reason
		ev.ClientInitiatedDisconnect = &byClient
		var ended *sessionEnded
		if errors.As(cl.StopCause(), &ended) {
			ev.DisconnectDetail = ended.detail
		}
	}
	return ev
}

// newSessionID returns a random session identifier.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// disconnectReason maps why cl ended to AWS's disconnectReason: the
// cause the server stopped it with (a takeover, a refusal, shutdown)
// when there is one, else cause (what ended its read loop).
func disconnectReason(cl *mqtt.Client, cause error) (string, bool) {
	if sc := cl.StopCause(); sc != nil {
		cause = sc
	}
	var ended *sessionEnded
	switch {
	case errors.As(cause, &ended):
		return ended.reason, false
	case cause == nil, errors.Is(cause, packets.CodeDisconnect), errors.Is(cause, packets.CodeSuccess):
		return "CLIENT_INITIATED_DISCONNECT", true
	case errors.Is(cause, packets.ErrSessionTakenOver):
		return "DUPLICATE_CLIENTID", false
	case errors.Is(cause, packets.ErrKeepAliveTimeout), errors.Is(cause, os.ErrDeadlineExceeded):
		return "MQTT_KEEP_ALIVE_TIMEOUT", false
	case errors.Is(cause, packets.ErrServerShuttingDown):
		return "SERVER_INITIATED_DISCONNECT", false
	case errors.Is(cause, errLogUnavailable):
		return "SERVER_ERROR", false
	case errors.Is(cause, io.EOF):
		return "CONNECTION_LOST", false
	}
	var code packets.Code
	if errors.As(cause, &code) && code.Code >= 0x80 {
		return "CLIENT_ERROR", false
	}
	return "CONNECTION_LOST", false
}
