package document

import "strconv"

// Error is a rejected request: an HTTP status code and AWS's message.
// It is sent to the client as {"code","message","timestamp","clientToken"}.
type Error struct {
	Code    int
	Message string
}

// Error implements error.
func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Message }

// Errors AWS IoT's Device Shadow service answers with (see "Device Shadow
// error messages" in the AWS IoT developer guide).
var (
	ErrInvalidJSON       = &Error{400, "Payload contains invalid json"}
	ErrMissingState      = &Error{400, "Missing required node: state"}
	ErrStateNotObject    = &Error{400, "State node must be an object"}
	ErrDesiredNotObject  = &Error{400, "Desired node must be an object"}
	ErrReportedNotObject = &Error{400, "Reported node must be an object"}
	ErrInvalidVersion    = &Error{400, "Invalid version"}
	ErrInvalidToken      = &Error{400, "Invalid clientToken"}
	ErrNullInArray       = &Error{400, "State contains an invalid node: arrays can't contain null"}
	ErrUnauthorized      = &Error{401, "Unauthorized"}
	ErrForbidden         = &Error{403, "Forbidden"}
	ErrVersionConflict   = &Error{409, "Version conflict"}
	ErrTooLarge          = &Error{413, "The payload exceeds the maximum size allowed"}
	ErrEncoding          = &Error{415, "Unsupported documented encoding; supported encoding is UTF-8"}
	ErrTooManyRequests   = &Error{429, "Too Many Requests"}
	ErrInternal          = &Error{500, "Internal service failure"}
)

// ErrInvalidNode rejects a state key other than desired and reported.
func ErrInvalidNode(key string) *Error {
	return &Error{400, "State contains an invalid node: '" + key + "'"}
}

// ErrTooDeep rejects desired or reported nested deeper than max.
func ErrTooDeep(max int) *Error {
	return &Error{400, "JSON contains too many levels of nesting; maximum is " + strconv.Itoa(max)}
}

// ErrNotFound is the 404 of a get or delete on a shadow that does not
// exist. name is the shadow name, or the thing name for the classic
// shadow.
func ErrNotFound(name string) *Error {
	return &Error{404, "No shadow exists with name: '" + name + "'"}
}

// AppendError appends the AWS error response document of e. token is
// echoed when hasToken.
func AppendError(dst []byte, e *Error, now int64, token string, hasToken bool) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, now, 10)
	dst = appendToken(dst, token, hasToken)
	return append(dst, '}')
}

func appendToken(dst []byte, token string, hasToken bool) []byte {
	if !hasToken {
		return dst
	}
	dst = append(dst, `,"clientToken":`...)
	return appendString(dst, token)
}
