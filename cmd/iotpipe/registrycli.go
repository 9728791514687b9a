package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iotpipe/iotpipe/ingest/admin"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// regCommand is one registry command ("things create"): its usage and
// a setup that binds its flags and returns what runs it.
type regCommand struct {
	usage string
	help  string
	// args is the number of positional arguments it takes.
	args  int
	setup func(fs *flag.FlagSet) func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error
}

// regGroups are the registry's command groups.
func regGroups() map[string]map[string]regCommand {
	return map[string]map[string]regCommand{
		"things":   thingCommands(),
		"certs":    certCommands(),
		"ca":       caCommands(),
		"policies": policyCommands(),
		"tokens":   tokenCommands(),
	}
}

// registryGroupMain runs `iotpipe <group> <command> ...`.
func registryGroupMain(group string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		cmds := regGroups()[group]
		usage := func(w io.Writer) {
			fmt.Fprintf(w, "Usage: iotpipe %s <command> [flags]\n\nCommands (through the HTTP API, authenticated):\n", group)
			names := make([]string, 0, len(cmds))
			for n := range cmds {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(w, "  %s %s %s\n      %s\n", group, n, cmds[n].usage, cmds[n].help)
			}
			if group == "tokens" {
				fmt.Fprintf(w, "  tokens secret\n      print a new random token secret (no API call): a --bootstrap-token value\n")
			}
			fmt.Fprintf(w, "\n%s", apiFlagsHelp)
		}
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			w, code := stdout, 0
			if len(args) == 0 {
				w, code = stderr, 2
			}
			usage(w)
			return code
		}
		if group == "tokens" && args[0] == "secret" {
			return tokenSecretMain(stdout, stderr)
		}
		cmd, ok := cmds[args[0]]
		if !ok {
			fmt.Fprintf(stderr, "iotpipe %s: unknown command %q\n\n", group, args[0])
			usage(stderr)
			return 2
		}
		name := "iotpipe " + group + " " + args[0]
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		var af apiFlags
		af.bind(fs)
		run := cmd.setup(fs)
		pos, err := parseArgs(fs, args[1:])
		cmdUsage := fmt.Sprintf("Usage: %s %s\n\n%s\n\n%s", name, cmd.usage, cmd.help, apiFlagsHelp)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, cmdUsage)
			return 0
		}
		if err == nil && len(pos) != cmd.args {
			err = fmt.Errorf("want %d argument(s), got %d", cmd.args, len(pos))
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n\n%s", name, err, cmdUsage)
			return 2
		}
		c, err := af.client()
		if err == nil {
			ctx, cancel := context.WithTimeout(ctx, af.timeout)
			defer cancel()
			err = run(ctx, c, &af, pos, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// attrs parses k=v attribute flags.
func attrs(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want name=value", kv)
		}
		m[k] = v
	}
	return m, nil
}

// show prints v as indented JSON.
func show(out io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// answer prints an operation's answer: JSON with --json, else line.
func answer(out io.Writer, f *apiFlags, raw []byte, line string) error {
	if f.json {
		_, err := out.Write(raw)
		return err
	}
	_, err := fmt.Fprintln(out, line)
	return err
}

// listAll reads every page of a list and prints it: JSON lines with
// --json, else a table of columns.
func listAll[T any](ctx context.Context, c *apiClient, f *apiFlags, path string, out io.Writer, header []string, row func(T) []string) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if !f.json {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	after := ""
	for {
		var p admin.Page[T]
		if _, err := c.do(ctx, "GET", path+sep+"limit=1000&after="+url.QueryEscape(after), nil, &p); err != nil {
			return err
		}
		for _, it := range p.Items {
			if f.json {
				b, _ := json.Marshal(it)
				fmt.Fprintf(tw, "%s\n", b)
			} else {
				fmt.Fprintln(tw, strings.Join(row(it), "\t"))
			}
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	return tw.Flush()
}

func esc(s string) string { return url.PathEscape(s) }

func thingCommands() map[string]regCommand {
	return map[string]regCommand{
		"create": {usage: "NAME [--type T] [--attr k=v]...", help: "create a thing (the same thing again is not an error)", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				typ := fs.String("type", "", "thing type name")
				var at multi
				fs.Var(&at, "attr", "attribute name=value (repeatable)")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					a, err := attrs(at)
					if err != nil {
						return err
					}
					var t registry.Thing
					raw, err := c.do(ctx, "POST", "/api/registry/things", admin.ThingRequest{Name: pos[0], TypeName: *typ, Attributes: a}, &t)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("thing %s (id %s, version %d)", t.Name, t.ID, t.Version()))
				}
			}},
		"list": {usage: "", help: "list things", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					return listAll(ctx, c, f, "/api/registry/things", out, []string{"NAME", "TYPE", "VERSION", "ATTRIBUTES"}, func(t *registry.Thing) []string {
						b, _ := json.Marshal(t.Attributes)
						if t.Attributes == nil {
							b = nil
						}
						return []string{t.Name, t.TypeName, strconv.FormatInt(t.Version(), 10), string(b)}
					})
				}
			}},
		"describe": {usage: "NAME", help: "show a thing and the principals attached to it", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					raw, err := c.do(ctx, "GET", "/api/registry/things/"+esc(pos[0]), nil, nil)
					if err != nil {
						return err
					}
					_, err = out.Write(raw)
					return err
				}
			}},
		"update": {usage: "NAME [--attr k=v]... [--merge] [--type T] [--expected-version N]", help: "change a thing's attributes (replaced, or merged with --merge: an empty value removes one) or type", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				var at multi
				fs.Var(&at, "attr", "attribute name=value (repeatable)")
				merge := fs.Bool("merge", false, "merge the attributes into the thing's")
				typ := fs.String("type", "\x00", "new thing type (\"\" removes it)")
				ev := fs.Int64("expected-version", 0, "fail unless the thing is at this version")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					a, err := attrs(at)
					if err != nil {
						return err
					}
					req := admin.ThingUpdateRequest{Attributes: a, Merge: *merge, ExpectedVersion: *ev}
					if *typ != "\x00" {
						req.TypeName = typ
					}
					var t registry.Thing
					raw, err := c.do(ctx, "PATCH", "/api/registry/things/"+esc(pos[0]), req, &t)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("thing %s (version %d)", t.Name, t.Version()))
				}
			}},
		"delete": {usage: "NAME [--expected-version N]", help: "delete a thing (its principals are detached; their live sessions end)", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				ev := fs.Int64("expected-version", 0, "fail unless the thing is at this version")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					path := "/api/registry/things/" + esc(pos[0])
					if *ev != 0 {
						path += "?expectedVersion=" + strconv.FormatInt(*ev, 10)
					}
					_, err := c.do(ctx, "DELETE", path, nil, nil)
					if err == nil {
						fmt.Fprintf(out, "deleted thing %s\n", pos[0])
					}
					return err
				}
			}},
		"attach": attachCommand("things", "attach a principal (certificate id or token principal) to a thing", "PUT"),
		"detach": attachCommand("things", "detach a principal from a thing", "DELETE"),
	}
}

// attachCommand attaches (PUT) or detaches (DELETE) --principal to the
// thing or policy named by the argument.
func attachCommand(group, help, method string) regCommand {
	return regCommand{usage: "NAME --principal ID", help: help, args: 1,
		setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
			principal := fs.String("principal", "", "certificate id or token principal")
			return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
				if *principal == "" {
					return errors.New("--principal is required")
				}
				_, err := c.do(ctx, method, "/api/registry/"+group+"/"+esc(pos[0])+"/principals/"+esc(*principal), nil, nil)
				if err == nil {
					verb := "attached"
					if method == "DELETE" {
						verb = "detached"
					}
					fmt.Fprintf(out, "%s: %s %s, principal %s\n", verb, map[string]string{"things": "thing", "policies": "policy"}[group], pos[0], *principal)
				}
				return err
			}
		}}
}

func certCommands() map[string]regCommand {
	status := func(verb string, st registry.CertificateStatus) regCommand {
		return regCommand{usage: "ID", help: verb + " a certificate (" + string(st) + ")", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					var cert registry.Certificate
					raw, err := c.do(ctx, "PUT", "/api/registry/certificates/"+esc(pos[0])+"/status", admin.StatusRequest{Status: st}, &cert)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("certificate %s is %s", cert.ID, cert.Status))
				}
			}}
	}
	return map[string]regCommand{
		"create": {usage: "--thing NAME --out DIR [--policy P]... [--days N] [--inactive]",
			help: "issue a key and certificate for a thing with iotpipe's CA, attached to it; writes DIR/NAME.crt, DIR/NAME.key (0600) and DIR/ca.pem, never overwriting", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				thing := fs.String("thing", "", "the thing (it must exist)")
				dir := fs.String("out", "", "directory to write the files to")
				var pols multi
				fs.Var(&pols, "policy", "policy to attach (repeatable)")
				days := fs.Int("days", 0, "validity in days (default 730)")
				inactive := fs.Bool("inactive", false, "register it INACTIVE (activate it later)")
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					if *thing == "" || *dir == "" {
						return errors.New("--thing and --out are required")
					}
					// Refuse before issuing when the files would not be
					// written (the key exists only in the answer).
					for _, ext := range []string{".crt", ".key"} {
						if _, err := os.Lstat(*dir + "/" + *thing + ext); err == nil {
							return fmt.Errorf("%s/%s%s exists: not overwriting it (choose another --out)", *dir, *thing, ext)
						}
					}
					req := admin.CreateCertificateRequest{Thing: *thing, Policies: pols, ValidityDays: *days}
					if *inactive {
						req.Status = registry.StatusInactive
					}
					var cc admin.CreatedCertificate
					if _, err := c.do(ctx, "POST", "/api/registry/certificates", req, &cc); err != nil {
						return err
					}
					files, err := pki.WriteDeviceFiles(*dir, *thing, &pki.Issued{ID: cc.ID, CertPEM: []byte(cc.PEM), KeyPEM: []byte(cc.KeyPEM)}, []byte(cc.CAPEM))
					if err != nil {
						return fmt.Errorf("certificate %s was registered but its files were not written (deactivate it: iotpipe certs revoke %s): %w", cc.ID, cc.ID, err)
					}
					if f.json {
						cc.KeyPEM = "(written to " + files.Key + ")"
						return show(out, cc)
					}
					fmt.Fprintf(out, "certificate %s (%s) for thing %s\n  %s\n  %s (private key, 0600)\n  %s (iotpipe's CA: --cafile)\n",
						cc.ID, cc.Status, *thing, files.Cert, files.Key, files.CA)
					return nil
				}
			}},
		"register": {usage: "FILE.pem [--active] [--thing NAME] [--policy P]...", help: "register a certificate you bring (INACTIVE unless --active); one signed by a registered CA is recorded under it", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				active := fs.Bool("active", false, "register it ACTIVE")
				thing := fs.String("thing", "", "attach it to this thing")
				var pols multi
				fs.Var(&pols, "policy", "policy to attach (repeatable)")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					pem, err := os.ReadFile(pos[0])
					if err != nil {
						return err
					}
					req := admin.RegisterCertificateRequest{PEM: string(pem), Thing: *thing, Policies: pols}
					if *active {
						req.Status = registry.StatusActive
					}
					var cert registry.Certificate
					raw, err := c.do(ctx, "POST", "/api/registry/certificates/register", req, &cert)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("certificate %s (%s)", cert.ID, cert.Status))
				}
			}},
		"list": {usage: "[--ca ID]", help: "list certificates (of one registered CA with --ca)", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				ca := fs.String("ca", "", "only the certificates registered under this CA certificate id")
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					path := "/api/registry/certificates"
					if *ca != "" {
						path += "?ca=" + url.QueryEscape(*ca)
					}
					return listAll(ctx, c, f, path, out, []string{"ID", "STATUS", "COMMON NAME", "NOT AFTER"}, func(c *registry.Certificate) []string {
						return []string{c.ID, string(c.Status), c.CommonName, c.Validity.NotAfter.UTC().Format(time.DateOnly)}
					})
				}
			}},
		"describe":   describeCommand("certificates", "show a certificate"),
		"activate":   status("activate", registry.StatusActive),
		"deactivate": status("deactivate", registry.StatusInactive),
		"revoke":     status("revoke", registry.StatusRevoked),
		"delete": {usage: "ID [--force]", help: "delete a certificate (not while ACTIVE or attached to a thing; --force detaches its policies)", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				force := fs.Bool("force", false, "detach its policies first")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					_, err := c.do(ctx, "DELETE", "/api/registry/certificates/"+esc(pos[0])+"?force="+strconv.FormatBool(*force), nil, nil)
					if err == nil {
						fmt.Fprintf(out, "deleted certificate %s\n", pos[0])
					}
					return err
				}
			}},
	}
}

// removeCommand deletes the entity of group the argument names and says
// done.
func removeCommand(group, arg, help, done string) regCommand {
	return regCommand{usage: arg, help: help, args: 1,
		setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
			return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
				_, err := c.do(ctx, "DELETE", "/api/registry/"+group+"/"+esc(pos[0]), nil, nil)
				if err == nil {
					fmt.Fprintf(out, "%s %s\n", done, pos[0])
				}
				return err
			}
		}}
}

// describeCommand prints one entity of group by id or name.
func describeCommand(group, help string) regCommand {
	return regCommand{usage: "ID", help: help, args: 1,
		setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
			return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
				raw, err := c.do(ctx, "GET", "/api/registry/"+group+"/"+esc(pos[0]), nil, nil)
				if err != nil {
					return err
				}
				_, err = out.Write(raw)
				return err
			}
		}}
}

func caCommands() map[string]regCommand {
	return map[string]regCommand{
		"register": {usage: "FILE.pem [--inactive] [--no-auto-registration] [--auto-activate] [--policy NAME]...",
			help: "register a CA certificate: devices it signed are registered on their first connect (just-in-time registration), PENDING_ACTIVATION, or ACTIVE with --auto-activate, with the --policy policies attached", args: 1,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				inactive := fs.Bool("inactive", false, "register it INACTIVE")
				noAuto := fs.Bool("no-auto-registration", false, "do not register its devices on their first connect")
				autoActivate := fs.Bool("auto-activate", false, "register its devices ACTIVE (they connect at once)")
				var pols multi
				fs.Var(&pols, "policy", "policy attached to each device it registers (repeatable)")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					pem, err := os.ReadFile(pos[0])
					if err != nil {
						return err
					}
					var ca registry.CACertificate
					raw, err := c.do(ctx, "POST", "/api/registry/cas", admin.RegisterCARequest{PEM: string(pem), SetAsActive: !*inactive,
						AllowAutoRegistration: !*noAuto, AutoActivate: *autoActivate, Policies: pols}, &ca)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("CA certificate %s (%s, auto-registration %s)", ca.ID, ca.Status, ca.AutoRegistration))
				}
			}},
		"list": {usage: "", help: "list CA certificates", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					return listAll(ctx, c, f, "/api/registry/cas", out, []string{"ID", "STATUS", "AUTO-REGISTRATION", "COMMON NAME", "POLICIES"}, func(c *registry.CACertificate) []string {
						return []string{c.ID, string(c.Status), string(c.AutoRegistration), c.CommonName, strings.Join(c.Policies, ",")}
					})
				}
			}},
		"describe":   describeCommand("cas", "show a CA certificate"),
		"activate":   caStatusCommand("activate", registry.CAActive),
		"deactivate": caStatusCommand("deactivate", registry.CAInactive),
		"delete":     removeCommand("cas", "ID", "delete a CA certificate (it must be INACTIVE)", "deleted CA certificate"),
	}
}

func caStatusCommand(verb string, st registry.CAStatus) regCommand {
	return regCommand{usage: "ID", help: verb + " a CA certificate", args: 1,
		setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
			return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
				var ca registry.CACertificate
				raw, err := c.do(ctx, "PATCH", "/api/registry/cas/"+esc(pos[0]), admin.CAUpdateRequest{Status: st}, &ca)
				if err != nil {
					return err
				}
				return answer(out, f, raw, fmt.Sprintf("CA certificate %s is %s", ca.ID, ca.Status))
			}
		}}
}

func policyCommands() map[string]regCommand {
	return map[string]regCommand{
		"create": {usage: "NAME FILE.json", help: "create a policy from a document in AWS IoT's grammar (\"-\" reads stdin)", args: 2,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					doc, err := readDoc(pos[1])
					if err != nil {
						return err
					}
					var p registry.Policy
					raw, err := c.do(ctx, "POST", "/api/registry/policies", admin.PolicyRequest{Name: pos[0], Document: doc}, &p)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("policy %s (version %d)", p.Name, p.Version()))
				}
			}},
		"update": {usage: "NAME FILE.json [--expected-version N]", help: "replace a policy's document (sessions using it get the new one at their next connect)", args: 2,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				ev := fs.Int64("expected-version", 0, "fail unless the policy is at this version")
				return func(ctx context.Context, c *apiClient, f *apiFlags, pos []string, out io.Writer) error {
					doc, err := readDoc(pos[1])
					if err != nil {
						return err
					}
					var p registry.Policy
					raw, err := c.do(ctx, "PUT", "/api/registry/policies/"+esc(pos[0]), admin.PolicyRequest{Document: doc, ExpectedVersion: *ev}, &p)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("policy %s (version %d)", p.Name, p.Version()))
				}
			}},
		"get": describeCommand("policies", "show a policy and the principals it is attached to"),
		"list": {usage: "", help: "list policies", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					return listAll(ctx, c, f, "/api/registry/policies", out, []string{"NAME", "VERSION", "MODIFIED"}, func(p *registry.Policy) []string {
						return []string{p.Name, strconv.FormatInt(p.Version(), 10), p.Modified.UTC().Format(time.RFC3339)}
					})
				}
			}},
		"delete": removeCommand("policies", "NAME", "delete a policy (not while attached)", "deleted policy"),
		"attach": attachCommand("policies", "attach a policy to a principal (certificate id or token principal)", "PUT"),
		"detach": attachCommand("policies", "detach a policy from a principal", "DELETE"),
	}
}

// readDoc reads a policy document from path ("-": stdin).
func readDoc(path string) (json.RawMessage, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not JSON: a policy document is a JSON object", path)
	}
	return b, nil
}

func tokenCommands() map[string]regCommand {
	return map[string]regCommand{
		"create": {usage: "--principal NAME [--policy P]... [--description TEXT]", help: "create an API/MQTT token for a principal; prints its secret once", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				principal := fs.String("principal", "", "the principal it authenticates as (letters and digits)")
				desc := fs.String("description", "", "what it is for")
				var pols multi
				fs.Var(&pols, "policy", "policy to attach to the principal (repeatable)")
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					if *principal == "" {
						return errors.New("--principal is required")
					}
					var t admin.CreatedToken
					raw, err := c.do(ctx, "POST", "/api/registry/tokens", admin.TokenRequest{Principal: *principal, Description: *desc, Policies: pols}, &t)
					if err != nil {
						return err
					}
					return answer(out, f, raw, fmt.Sprintf("%s\n(token %s of principal %s: the secret above is shown only now)", t.Secret, t.ID, t.Principal))
				}
			}},
		"list": {usage: "", help: "list tokens (never their secrets)", args: 0,
			setup: func(fs *flag.FlagSet) func(context.Context, *apiClient, *apiFlags, []string, io.Writer) error {
				return func(ctx context.Context, c *apiClient, f *apiFlags, _ []string, out io.Writer) error {
					return listAll(ctx, c, f, "/api/registry/tokens", out, []string{"ID", "PRINCIPAL", "CREATED", "DESCRIPTION"}, func(t *registry.Token) []string {
						return []string{t.ID, t.Principal, t.Created.UTC().Format(time.RFC3339), t.Description}
					})
				}
			}},
		"revoke": removeCommand("tokens", "ID", "revoke a token: it no longer authenticates, its live sessions end", "revoked token"),
	}
}

// tokenSecretMain prints a new random token secret (no API call): the
// value of --bootstrap-token for an automated first start.
func tokenSecretMain(stdout, stderr io.Writer) int {
	secret, err := registry.NewTokenSecret()
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe tokens secret:", err)
		return 1
	}
	fmt.Fprintln(stdout, secret)
	return 0
}
