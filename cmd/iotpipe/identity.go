package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/iotpipe/iotpipe/ingest/admin"
	"github.com/iotpipe/iotpipe/ingest/apiauth"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// AdminTokenFile is the file, in the data directory, holding the secret
// of the admin token made on the first start (mode 0600): the CLI's
// default token.
const AdminTokenFile = "admin.token"

// adminPolicy is the policy of the first start's admin token: every
// action on every resource.
const (
	adminPolicy    = "iotpipe-admin"
	adminPrincipal = "admin"
	adminDocument  = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
)

// registryReadyTimeout bounds the wait for the registry's view to catch
// up with its topic at start.
const registryReadyTimeout = 2 * time.Minute

// startIdentity starts the registry (every node keeps a view: the API's
// tokens and the devices' credentials are in it), loads or creates
// iotpipe's CA, and on an ingest node's first start makes the admin
// token. The registry stops after the listeners (ingest phase).
func (n *node) startIdentity(ctx context.Context) error {
	cfg, lg := n.cfg, n.lg
	reg, err := registry.New(lg, registry.Options{
		Dir: cfg.path("registry"), Topic: lg.Topics().Registry, Logger: n.log,
		CheckPolicy: func(doc []byte) error { _, err := policy.Parse("policy", doc); return err },
	})
	if err != nil {
		return err
	}
	n.registry = reg
	n.reg.MustRegister(reg.Collectors()...)
	n.lc.onStop(ingestPhase, "registry view", func(context.Context) error { return reg.Close() })
	n.lc.run(ingestPhase, "registry", reg.Run)
	wctx, cancel := context.WithTimeout(ctx, registryReadyTimeout)
	defer cancel()
	if err := reg.WaitReady(wctx); err != nil {
		return fmt.Errorf("registry: its view did not catch up with %s within %s: %w", lg.Topics().Registry, registryReadyTimeout, err)
	}
	ca, err := pki.LoadOrCreateCA(cfg.path("pki"), pki.CAOptions{Logger: n.log})
	if err != nil {
		return err
	}
	n.ca = ca
	n.auth = apiauth.New(reg, apiauth.Options{Logger: n.log})
	n.lc.onStop(ingestPhase, "API authenticator", func(context.Context) error { n.auth.Close(); return nil })
	n.reg.MustRegister(n.auth.Collectors()...)
	n.route("/api/registry/", apiauth.ActionAdmin, apiauth.Fixed("api/registry"), admin.Handler(reg, ca, admin.Options{Logger: n.log}))
	if n.roles.ingest {
		return n.firstToken(ctx)
	}
	return nil
}

// firstToken makes the admin token when the registry has no token yet:
// its secret is --bootstrap-token's, or a random one, written to
// <data-dir>/admin.token and printed once.
func (n *node) firstToken(ctx context.Context) error {
	toks, err := n.registry.ListTokens(registry.ListOptions{Limit: 1})
	if err != nil {
		return err
	}
	if len(toks) > 0 {
		return nil
	}
	if _, err := n.registry.Policy(adminPolicy); errors.Is(err, registry.ErrNotFound) {
		if _, err := n.registry.CreatePolicy(ctx, adminPolicy, []byte(adminDocument)); err != nil && !errors.Is(err, registry.ErrAlreadyExists) {
			return fmt.Errorf("first start: admin policy: %w", err)
		}
	} else if err != nil {
		return err
	}
	tok, secret, err := n.registry.CreateToken(ctx, registry.TokenOptions{
		Principal: adminPrincipal, Description: "made on the first start", Policies: []string{adminPolicy}, Secret: n.cfg.BootstrapToken})
	if err != nil {
		return fmt.Errorf("first start: admin token: %w", err)
	}
	path := n.cfg.path(AdminTokenFile)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("first start: write %s: %w", path, err)
	}
	shown := secret
	if n.cfg.BootstrapToken != "" {
		shown = "(the --bootstrap-token given)"
	}
	n.log.Warn("======================================================================")
	n.log.Warn("first start: made the admin API token (kept in " + path + ", mode 0600; the iotpipe CLI reads it from there):")
	n.log.Warn("  " + shown)
	n.log.Warn("  token id " + tok.ID + "; revoke it with: iotpipe tokens revoke " + tok.ID)
	n.log.Warn("next: create a device and its certificate, then connect it over TLS:")
	n.log.Warn("  iotpipe things create sensor-1")
	n.log.Warn("  iotpipe certs create --thing sensor-1 --out certs/ --policy device")
	n.log.Warn("  (see the README's quickstart for the device policy and mosquitto_pub)")
	n.log.Warn("======================================================================")
	return nil
}

// route serves h at pattern to requests whose token's policies allow
// action on the resource res names.
func (n *node) route(pattern, action string, res apiauth.Resource, h http.Handler) {
	n.mux.Handle(pattern, n.auth.Require(action, res, h))
}

// httpPrincipal is the principal the API's authenticator put in an HTTP
// request's context ("" for none).
func httpPrincipal(r *http.Request) string {
	if p := apiauth.FromContext(r.Context()); p != nil {
		return p.Name
	}
	return ""
}

// pathResource is the resource prefix + the request's path value name.
func pathResource(prefix, name string) apiauth.Resource {
	return func(r *http.Request) string { return prefix + r.PathValue(name) }
}

// shadowResource is thing/<thing>, or thing/<thing>/<shadow name> for a
// named shadow (what iot:*ThingShadow is checked against).
func shadowResource(r *http.Request) string {
	res := "thing/" + r.PathValue("thing")
	if name := r.URL.Query().Get("name"); name != "" {
		res += "/" + name
	}
	return res
}
