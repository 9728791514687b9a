package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	id := strings.Repeat("0a", 32)
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		check func(string) error
		what  string
		in    string
		ok    bool
	}{
		{CheckThingName, "thing", "sensor-1", true},
		{CheckThingName, "thing", "a:b_c-D9", true},
		{CheckThingName, "thing", strings.Repeat("a", 128), true},
		{CheckThingName, "thing", long, false},
		{CheckThingName, "thing", "", false},
		{CheckThingName, "thing", "a/b", false},
		{CheckThingName, "thing", "a b", false},
		{CheckThingName, "thing", "a.b", false},
		{CheckThingName, "thing", "a+b", false},
		{CheckThingName, "thing", "é", false},
		{CheckThingTypeName, "type", "Lamp_v2", true},
		{CheckThingTypeName, "type", "", false},
		{CheckPolicyName, "policy", "allow-all", true},
		{CheckPolicyName, "policy", "a_b+c=d,e.f@g-h", true},
		{CheckPolicyName, "policy", "a/b", false},
		{CheckPolicyName, "policy", "a:b", false},
		{CheckPolicyName, "policy", long, false},
		{CheckPolicyName, "policy", "", false},
		{CheckTokenPrincipal, "token principal", "dashboard", true},
		{CheckTokenPrincipal, "token principal", "Admin2", true},
		{CheckTokenPrincipal, "token principal", "ci-bot", false},
		{CheckTokenPrincipal, "token principal", id, false},
		{CheckTokenPrincipal, "token principal", "", false},
		{func(p string) error { _, err := CheckPrincipal(p); return err }, "principal", id, true},
		{func(p string) error { _, err := CheckPrincipal(p); return err }, "principal", "0x" + strings.ToUpper(id), true},
		{func(p string) error { _, err := CheckPrincipal(p); return err }, "principal", "dashboard", true},
		{func(p string) error { _, err := CheckPrincipal(p); return err }, "principal", "a/b", false},
	} {
		err := tc.check(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s %q: err %v, want ok %v", tc.what, tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %q: %v is not ErrInvalid", tc.what, tc.in, err)
		}
	}
	if p, _ := CheckPrincipal("0x" + strings.ToUpper(id)); p != id {
		t.Errorf("principal not canonical: %s", p)
	}
}

func TestCheckAttributes(t *testing.T) {
	many := map[string]string{}
	for i := range MaxAttributes + 1 {
		many[fmt.Sprint("a", i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		ok    bool
	}{
		{"none", nil, true},
		{"AWS characters", map[string]string{"a_.,@/:#-Z9": "v_.,@/:#=[]-"}, true},
		{"empty value", map[string]string{"k": ""}, true},
		{"longest", map[string]string{strings.Repeat("k", 128): strings.Repeat("v", 800)}, true},
		{"name too long", map[string]string{strings.Repeat("k", 129): "v"}, false},
		{"value too long", map[string]string{"k": strings.Repeat("v", 801)}, false},
		{"empty name", map[string]string{"": "v"}, false},
		{"space in value", map[string]string{"k": "a b"}, false},
		{"brackets in name", map[string]string{"k[0]": "v"}, false},
		{"too many", many, false},
	} {
		if err := CheckAttributes(tc.attrs); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// Every status change AWS's UpdateCertificate allows, and none other.
func TestCheckTransition(t *testing.T) {
	all := []CertificateStatus{StatusActive, StatusInactive, StatusRevoked, StatusPendingActivation, StatusPendingTransfer, StatusRegisterInactive}
	settable := map[CertificateStatus]bool{StatusActive: true, StatusInactive: true, StatusRevoked: true}
	for _, from := range all {
		for _, to := range append(all, "ACTIVATED") {
			err := CheckTransition(from, to)
			var want error
			switch {
			case !settable[to]:
				want = ErrInvalid
			case from == to:
			case from == StatusRevoked || from == StatusPendingTransfer:
				want = ErrCertificateState
			}
			if want == nil && err != nil || want != nil && !errors.Is(err, want) {
				t.Errorf("%s -> %s: err %v, want %v", from, to, err, want)
			}
		}
	}
}
