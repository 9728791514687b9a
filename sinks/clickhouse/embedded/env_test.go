package embedded

import (
	"slices"
	"testing"
)

func TestChildEnv(t *testing.T) {
	env := []string{"PATH=/bin", "HOME=/root", "IOTPIPE_WEBHOOK_SECRET=s3cret", "AWS_SECRET_ACCESS_KEY=x", "LC_ALL=C", "TZ=UTC", "PATHX=no"}
	got := childEnv(env, []string{"EXTRA=1"})
	want := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "TZ=UTC", "EXTRA=1"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}
