package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
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
	var raw [32]byte
	var id [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, "", fmt.Errorf("token secret: %w", err)
	}
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", fmt.Errorf("token id: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	n := &Token{ID: hex.EncodeToString(id[:]), Principal: o.Principal, Description: o.Description, SecretHash: secretHash(secret)}
	var out *Token
	err := r.do(ctx, func(tx *tx) error {
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
