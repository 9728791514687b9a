package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// TokenPrefix starts every token secret, so a leaked one is recognized.
const TokenPrefix = "iotp_"

// TokenOptions says what token to create.
type TokenOptions struct {
	// Principal is the principal the token authenticates as (see
	// CheckTokenPrincipal); several tokens may share one.
	Principal string
	// Description is free text shown by ListTokens.
	Description string
	// Policies are attached to the principal (they must exist).
	Policies []string
	// Secret, when set, is the token's secret instead of a random one
	// (an operator's bootstrap token, say): TokenPrefix and 43 base64url
	// characters, as CheckTokenSecret says.
	Secret string
}

// NewTokenSecret returns a new random token secret: TokenPrefix and 43
// base64url characters (256 random bits).
func NewTokenSecret() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// CheckTokenSecret checks that secret has the form of a token secret:
// TokenPrefix and 43 base64url characters (256 bits).
func CheckTokenSecret(secret string) error {
	rest, ok := strings.CutPrefix(secret, TokenPrefix)
	if !ok {
		return fmt.Errorf("%w: a token secret starts with %q", ErrInvalid, TokenPrefix)
	}
	if b, err := base64.RawURLEncoding.DecodeString(rest); err != nil || len(b) != 32 {
		return fmt.Errorf("%w: a token secret is %q and 43 base64url characters (256 bits)", ErrInvalid, TokenPrefix)
	}
	return nil
}

// CreateToken creates a token for o.Principal and attaches o.Policies to
// the principal. It returns the secret: TokenPrefix and 43 base64url
// characters (256 random bits); it is shown only here, the registry
// keeps only its SHA-256.
func (r *Registry) CreateToken(ctx context.Context, o TokenOptions) (*Token, string, error) {
	if err := CheckTokenPrincipal(o.Principal); err != nil {
		return nil, "", err
	}
	for _, p := range o.Policies {
		if err := CheckPolicyName(p); err != nil {
			return nil, "", err
		}
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", fmt.Errorf("token id: %w", err)
	}
	secret, err := NewTokenSecret()
	if err != nil {
		return nil, "", err
	}
	if o.Secret != "" {
		if err := CheckTokenSecret(o.Secret); err != nil {
			return nil, "", err
		}
		if _, err := r.TokenBySecret(o.Secret); err == nil {
			return nil, "", fmt.Errorf("token: %w: a token with this secret exists", ErrAlreadyExists)
		}
		secret = o.Secret
	}
	n := &Token{ID: hex.EncodeToString(id[:]), Principal: o.Principal, Description: o.Description, SecretHash: secretHash(secret)}
	var out *Token
	err = r.do(ctx, func(tx *tx) error {
		if err := policiesExist(tx, o.Policies); err != nil {
			return err
		}
		t := *n
		if err := tx.put(&t, nil); err != nil {
			return err
		}
		// The principal exists by this token: no check through the
		// index, which does not see the operation's own writes.
		for _, p := range o.Policies {
			a := &Attachment{Principal: t.Principal, Policy: p}
			ok, err := tx.has(a.Key())
			if err != nil {
				return err
			}
			if !ok {
				if err := tx.put(a, nil); err != nil {
					return err
				}
			}
		}
		out = &t
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, secret, nil
}

// RevokeToken deletes the token id: its secret no longer authenticates
// and its live sessions end (see Change.Ends). The principal's
// attachments stay, for its other tokens.
func (r *Registry) RevokeToken(ctx context.Context, id string) error {
	return r.do(ctx, func(tx *tx) error {
		if err := mustExist(tx, tokenKey(id), "token "+id); err != nil {
			return err
		}
		tx.del(tokenKey(id))
		return nil
	})
}
