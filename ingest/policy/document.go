package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Version is the only policy language version iotpipe reads (the one with
// policy variables).
const Version = "2012-10-17"

// MaxDocumentSize is AWS IoT Core's limit on a policy document: 2048
// characters, not counting white space.
const MaxDocumentSize = 2048

// Policy is a parsed AWS IoT policy document. It is immutable and safe to
// share between connections.
type Policy struct {
	name       string
	statements []*statement
	warnings   []string
}

// Name returns the name the policy was parsed under.
func (p *Policy) Name() string { return p.name }

// Warnings lists what the document names that iotpipe never resolves
// (policy variables and condition keys it does not know, such as Amazon
// Cognito's): statements using such a variable match nothing, and such a
// condition key is always absent. The document is valid all the same, as in
// AWS.
func (p *Policy) Warnings() []string { return p.warnings }

// statement is one Allow or Deny.
type statement struct {
	index       int // 1-based, for messages
	sid         string
	deny        bool
	actions     []*glob // lower-case action patterns
	notAction   bool
	resources   []resource
	notResource bool
	conditions  []*condition
	slots       uint16 // the known actions (slot bits) the statement covers
}

// resource is one Resource or NotResource entry: a pattern over the short
// form (topic/a/b), precompiled when it has no variable.
type resource struct {
	tmpl   template
	static *glob
	never  bool // another service's ARN (such as greengrass)
}

// Parse reads an AWS IoT policy document (JSON, Version 2012-10-17).
// Statement may be one object or a list; Action, NotAction, Resource and
// NotResource a string or a list; Effect is Allow or Deny. Resources are
// full ARNs (any partition, region and account: iotpipe ignores both) or
// the short forms client/..., topic/..., topicfilter/..., thing/... and *.
// Errors name the policy, the statement and the field.
func Parse(name string, doc []byte) (*Policy, error) {
	p, err := parse(name, doc)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", name, err)
	}
	return p, nil
}

func parse(name string, doc []byte) (*Policy, error) {
	if n := nonSpaceLen(doc); n > MaxDocumentSize {
		return nil, fmt.Errorf("document has %d characters besides white space; AWS IoT allows %d", n, MaxDocumentSize)
	}
	var top map[string]json.RawMessage
	if err := decodeJSON(doc, &top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, errors.New("document is not a JSON object")
	}
	if err := onlyFields(top, "Version", "Id", "Statement"); err != nil {
		return nil, err
	}
	var version string
	if err := decodeField(top, "Version", &version); err != nil {
		return nil, err
	}
	switch version {
	case Version:
	case "":
		return nil, fmt.Errorf("Version is missing: write \"Version\": %q", Version)
	default:
		return nil, fmt.Errorf("Version %q is not supported: iotpipe reads %q documents", version, Version)
	}
	raw, ok := top["Statement"]
	if !ok {
		return nil, errors.New("Statement is missing")
	}
	var list []json.RawMessage
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '{' {
		list = []json.RawMessage{raw}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("Statement must be an object or a list of objects")
	}
	if len(list) == 0 {
		return nil, errors.New("Statement is empty")
	}
	p := &Policy{name: name}
	for i, r := range list {
		s, err := parseStatement(i+1, r, p)
		if err != nil {
			return nil, err
		}
		p.statements = append(p.statements, s)
	}
	return p, nil
}

// parseStatement reads statement number index.
func parseStatement(index int, raw json.RawMessage, p *Policy) (*statement, error) {
	s := &statement{index: index}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("statement %d is not a JSON object", index)
	}
	if err := decodeField(fields, "Sid", &s.sid); err != nil {
		return nil, s.errorf("%w", err)
	}
	for _, f := range []string{"Principal", "NotPrincipal"} {
		if _, ok := fields[f]; ok {
			return nil, s.errorf("%s is not allowed: an AWS IoT policy applies to the principal it is attached to", f)
		}
	}
	if err := onlyFields(fields, "Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"); err != nil {
		return nil, s.errorf("%w", err)
	}
	var effect string
	if err := decodeField(fields, "Effect", &effect); err != nil {
		return nil, s.errorf("%w", err)
	}
	switch effect {
	case "Allow":
	case "Deny":
		s.deny = true
	case "":
		return nil, s.errorf("Effect is missing: Allow or Deny")
	default:
		return nil, s.errorf("Effect %q is not Allow or Deny", effect)
	}
	actions, field, err := eitherField(fields, "Action", "NotAction")
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	s.notAction = field == "NotAction"
	for _, a := range actions {
		g, err := parseAction(a)
		if err != nil {
			return nil, s.errorf("%s: %w", field, err)
		}
		s.actions = append(s.actions, g)
	}
	s.slots = actionSlots(s.actions, s.notAction)
	resources, field, err := eitherField(fields, "Resource", "NotResource")
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	s.notResource = field == "NotResource"
	for _, r := range resources {
		res, err := parseResource(r)
		if err != nil {
			return nil, s.errorf("%s: %w", field, err)
		}
		p.warnUnknown(res.tmpl.variables(), "policy variable")
		s.resources = append(s.resources, res)
	}
	if raw, ok := fields["Condition"]; ok {
		if s.conditions, err = parseConditions(raw); err != nil {
			return nil, s.errorf("Condition: %w", err)
		}
		for _, c := range s.conditions {
			p.warnUnknown([]key{c.key}, "condition key")
			for _, v := range c.values {
				p.warnUnknown(v.variables(), "policy variable")
			}
		}
	}
	return s, nil
}

func (s *statement) errorf(format string, args ...any) error {
	where := fmt.Sprintf("statement %d", s.index)
	if s.sid != "" {
		where += fmt.Sprintf(" (Sid %q)", s.sid)
	}
	return fmt.Errorf(where+": "+format, args...)
}

// warnUnknown records names iotpipe never resolves, once each.
func (p *Policy) warnUnknown(keys []key, what string) {
	for _, k := range keys {
		if k.known() {
			continue
		}
		w := fmt.Sprintf("%s %q is not known to iotpipe: it never has a value", what, k.name)
		if !containsString(p.warnings, w) {
			p.warnings = append(p.warnings, w)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseAction reads an action name such as iot:Publish, iot:* or *.
// Action names are case-insensitive.
func parseAction(a string) (*glob, error) {
	if a != "*" {
		service, name, ok := strings.Cut(a, ":")
		if !ok || service == "" || name == "" || strings.ContainsFunc(service, func(r rune) bool {
			return !(r == '-' || r == '*' || r == '?' || unicode.IsLetter(r) || unicode.IsDigit(r))
		}) {
			return nil, fmt.Errorf("%q is not an action such as iot:Publish", a)
		}
	}
	toks, err := parseTemplate(strings.ToLower(a))
	if err != nil {
		return nil, err
	}
	if toks.hasVariables() {
		return nil, fmt.Errorf("action %q: policy variables are not allowed in actions", a)
	}
	return compileGlob(toks), nil
}

// parseResource reads one resource: a full ARN, whose resource part is
// kept, or a short form.
func parseResource(r string) (resource, error) {
	short := r
	if strings.HasPrefix(r, "arn:") {
		parts := strings.SplitN(r, ":", arnParts)
		if len(parts) < arnParts {
			return resource{}, fmt.Errorf("%q is not an ARN of the form arn:aws:iot:REGION:ACCOUNT:RESOURCE", r)
		}
		service, err := parseTemplate(parts[2])
		if err != nil {
			return resource{}, fmt.Errorf("%q: %w", r, err)
		}
		if service.hasVariables() || !compileGlob(service).match("iot") {
			// Another service's resource (such as greengrass): it never
			// names what iotpipe authorizes.
			return resource{never: true}, nil
		}
		short = parts[5]
	}
	if short == "" {
		return resource{}, fmt.Errorf("%q names no resource", r)
	}
	t, err := parseTemplate(short)
	if err != nil {
		return resource{}, fmt.Errorf("%q: %w", r, err)
	}
	res := resource{tmpl: t}
	if !t.hasVariables() {
		res.static = compileGlob(t)
	}
	return res, nil
}

// parseConditions reads a Condition block: operator -> key -> value(s).
func parseConditions(raw json.RawMessage) ([]*condition, error) {
	var block map[string]json.RawMessage
	if err := json.Unmarshal(raw, &block); err != nil || block == nil {
		return nil, errors.New("must be an object of operators, such as {\"StringEquals\": {\"iot:ClientId\": \"a\"}}")
	}
	var out []*condition
	for _, opName := range sortedKeys(block) {
		op, set, ifExists, err := parseOperator(opName)
		if err != nil {
			return nil, err
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(block[opName], &keys); err != nil || keys == nil {
			return nil, fmt.Errorf("%s must be an object of condition keys", opName)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%s has no condition key", opName)
		}
		for _, k := range sortedKeys(keys) {
			if strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("%s: empty condition key", opName)
			}
			vals, err := conditionValues(keys[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", opName, k, err)
			}
			c := &condition{op: op, set: set, ifExists: ifExists, key: parseKey(k), written: opName}
			for _, v := range vals {
				t, err := parseTemplate(v)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", opName, k, err)
				}
				if err := op.checkValue(t); err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				c.values = append(c.values, t)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// conditionValues reads a condition's value: a string, number or boolean,
// or a non-empty list of them.
func conditionValues(raw json.RawMessage) ([]string, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	scalar := func(v any) (string, bool) {
		switch x := v.(type) {
		case string:
			return x, true
		case json.Number:
			return x.String(), true
		case bool:
			if x {
				return "true", true
			}
			return "false", true
		}
		return "", false
	}
	if s, ok := scalar(v); ok {
		return []string{s}, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("value must be a string, number, boolean or a list of them")
	}
	if len(list) == 0 {
		return nil, errors.New("value list is empty")
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := scalar(x)
		if !ok {
			return nil, fmt.Errorf("value %d must be a string, number or boolean", i+1)
		}
		out[i] = s
	}
	return out, nil
}

// eitherField reads exactly one of two string-or-list fields.
func eitherField(fields map[string]json.RawMessage, a, b string) ([]string, string, error) {
	_, hasA := fields[a]
	_, hasB := fields[b]
	switch {
	case hasA && hasB:
		return nil, "", fmt.Errorf("%s and %s together: give one of them", a, b)
	case !hasA && !hasB:
		return nil, "", fmt.Errorf("%s is missing", a)
	}
	name := a
	if hasB {
		name = b
	}
	list, err := stringOrList(fields[name])
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	return list, name, nil
}

// stringOrList reads "x" or ["x", "y"] (not empty, no empty string).
func stringOrList(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, errors.New("empty string")
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("must be a string or a list of strings")
	}
	if len(list) == 0 {
		return nil, errors.New("empty list")
	}
	for i, s := range list {
		if s == "" {
			return nil, fmt.Errorf("entry %d is an empty string", i+1)
		}
	}
	return list, nil
}

// decodeField reads an optional string field.
func decodeField(fields map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s must be a string", name)
	}
	return nil
}

// onlyFields rejects fields outside the grammar (names are case-sensitive,
// as in AWS).
func onlyFields(fields map[string]json.RawMessage, allowed ...string) error {
	for _, k := range sortedKeys(fields) {
		if !containsString(allowed, k) {
			return fmt.Errorf("unknown field %q (expected one of %s)", k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeJSON decodes doc into v and reports syntax errors by line and column.
func decodeJSON(doc []byte, v any) error {
	err := json.Unmarshal(doc, v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := position(doc, syn.Offset)
		return fmt.Errorf("line %d, column %d: %v", line, col, syn)
	}
	if err != nil {
		return fmt.Errorf("document is not a JSON object: %v", err)
	}
	return nil
}

// position turns a byte offset into a 1-based line and column.
func position(doc []byte, offset int64) (line, col int) {
	if offset > int64(len(doc)) {
		offset = int64(len(doc))
	}
	before := doc[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// nonSpaceLen counts the characters of doc that are not white space.
func nonSpaceLen(doc []byte) int {
	n := 0
	for _, r := range string(doc) {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}
