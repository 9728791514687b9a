package registry

import "errors"

// The errors of registry operations, each wrapped with what was being
// done; they map to AWS IoT's exceptions (named beside each) and to the
// HTTP API's status codes.
var (
	// ErrNotFound: the entity does not exist (ResourceNotFoundException, 404).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an entity of that name or id exists with
	// another content (ResourceAlreadyExistsException, 409).
	ErrAlreadyExists = errors.New("already exists")
	// ErrVersionConflict: the expected version is not the entity's
	// (VersionConflictException, 409).
	ErrVersionConflict = errors.New("version conflict")
	// ErrDeleteConflict: the entity is attached to others and cannot be
	// deleted (DeleteConflictException, 409).
	ErrDeleteConflict = errors.New("attached: delete conflict")
	// ErrCertificateState: the certificate's (or CA's) status does not
	// allow the operation (CertificateStateException, 406).
	ErrCertificateState = errors.New("not allowed in the certificate's state")
	// ErrInvalid: a name, attribute, status, document or certificate is
	// not valid (InvalidRequestException, MalformedPolicyException,
	// CertificateValidationException, 400).
	ErrInvalid = errors.New("invalid request")
	// ErrClosed: the registry is not running (Run ended).
	ErrClosed = errors.New("registry closed")
)
