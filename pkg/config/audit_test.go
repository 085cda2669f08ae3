package config

import (
	"errors"
	"testing"
	"time"
)

func TestAuditCheckpointIntervalDefaultsToAMinuteAndIsBounded(t *testing.T) {
	c, err := Load("", MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.CheckpointInterval != time.Minute {
		t.Errorf("default checkpoint interval %s, want 1m", c.Audit.CheckpointInterval)
	}
	tests := []struct {
		name string
		yaml string
		want time.Duration // 0: refused
	}{
		{"thirty seconds are accepted", "audit:\n  checkpoint_interval: 30s\n", 30 * time.Second},
		{"an hour is accepted", "audit:\n  checkpoint_interval: 1h\n", time.Hour},
		{"below a second is refused", "audit:\n  checkpoint_interval: 100ms\n", 0},
		{"above an hour is refused", "audit:\n  checkpoint_interval: 2h\n", 0},
		{"a negative interval is refused", "audit:\n  checkpoint_interval: -1m\n", 0},
		{"an unknown audit field is refused", "audit:\n  checkpoints: 1m\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tt.yaml), MapEnv(nil))
			if tt.want == 0 {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Load = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || c.Audit.CheckpointInterval != tt.want {
				t.Fatalf("Load: %v, interval %v; want %s", err, c, tt.want)
			}
		})
	}
}
