package mqttload

import (
	"fmt"
	"strconv"
)

// The payload is a JSON object of fixed layout whose numbers are rewritten
// in place: {"temperature":21.37,"seq":          42,"conn":7,"pad":"xxx"}.
// Numbers are right-aligned in fixed-width fields padded with spaces
// (JSON whitespace), so the bytes stay valid JSON without reallocation.
const (
	payloadHead = `{"temperature":`
	tempWidth   = 5 // NN.NN
	payloadSeq  = `,"seq":`
	seqWidth    = 20 // fits any uint64
	payloadConn = `,"conn":`
	connWidth   = 7
	payloadPad  = `,"pad":"`
	payloadTail = `"}`
)

// payloadTemplate is a JSON payload with fields rewritten per message.
type payloadTemplate struct {
	buf     []byte
	tempOff int
	seqOff  int
}

// newPayload builds a payload of exactly size bytes for connection conn.
func newPayload(size, conn int) (payloadTemplate, error) {
	if size < MinSize {
		return payloadTemplate{}, fmt.Errorf("payload size %d is smaller than the %d-byte JSON template", size, MinSize)
	}
	if conn < 0 || conn > 9999999 {
		return payloadTemplate{}, fmt.Errorf("connection index %d does not fit the payload template", conn)
	}
	b := make([]byte, 0, size)
	b = append(b, payloadHead...)
	p := payloadTemplate{tempOff: len(b)}
	b = append(b, "00.00"...)
	b = append(b, payloadSeq...)
	p.seqOff = len(b)
	b = appendPadded(b, strconv.Itoa(0), seqWidth)
	b = append(b, payloadConn...)
	b = appendPadded(b, strconv.Itoa(conn), connWidth)
	b = append(b, payloadPad...)
	for len(b) < size-len(payloadTail) {
		b = append(b, 'x')
	}
	b = append(b, payloadTail...)
	p.buf = b
	p.set(0)
	return p, nil
}

func appendPadded(b []byte, s string, width int) []byte {
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

// set writes seq and a temperature derived from it into the payload.
func (p *payloadTemplate) set(seq uint64) {
	// Temperature 15.00 to 34.99, varying with seq.
	t := 1500 + seq%2000
	f := p.buf[p.tempOff : p.tempOff+tempWidth]
	f[4] = byte('0' + t%10)
	f[3] = byte('0' + t/10%10)
	f[2] = '.'
	f[1] = byte('0' + t/100%10)
	f[0] = byte('0' + t/1000%10)

	s := p.buf[p.seqOff : p.seqOff+seqWidth]
	i := seqWidth - 1
	for {
		s[i] = byte('0' + seq%10)
		seq /= 10
		i--
		if seq == 0 {
			break
		}
	}
	for ; i >= 0; i-- {
		s[i] = ' '
	}
}
