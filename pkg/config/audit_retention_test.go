package config

import (
	"errors"
	"testing"
	"time"
)

func TestAuditRetentionDefaultsToForeverAndIsNotNegative(t *testing.T) {
	c, err := Load("", MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Retention.Audit != 0 {
		t.Errorf("default retention.audit %s, want 0 (keep forever)", c.Retention.Audit)
	}
	if c, err := Load(writeFile(t, "retention:\n  audit: 8760h\n"), MapEnv(nil)); err != nil || c.Retention.Audit != 8760*time.Hour {
		t.Errorf("retention.audit 8760h: %v", err)
	}
	if _, err := Load(writeFile(t, "retention:\n  audit: -1h\n"), MapEnv(nil)); !errors.Is(err, ErrInvalid) {
		t.Errorf("a negative retention.audit: %v, want ErrInvalid", err)
	}
}
