package config

import (
	"errors"
	"testing"
	"time"
)

func TestRetentionDefaultsAreWhatASecurityTeamAccepts(t *testing.T) {
	c, err := Load("", MapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Retention{
		Certificates: 2160 * time.Hour, OCSPResponses: time.Hour, AuthzReports: 720 * time.Hour, Interval: 10 * time.Minute,
		BatchSize: 1000, BatchPause: 50 * time.Millisecond, MaxRun: 2 * time.Minute,
	}
	if c.Retention != want {
		t.Errorf("default retention %+v, want %+v", c.Retention, want)
	}
}

func TestRetentionSettingsAreValidated(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(Retention) bool // nil: refused
	}{
		{"ninety days in Go syntax are accepted", "retention:\n  certificates: 2160h\n",
			func(r Retention) bool { return r.Certificates == 2160*time.Hour }},
		{"a week of certificates and a day of OCSP responses are accepted", "retention:\n  certificates: 168h\n  ocsp_responses: 24h\n",
			func(r Retention) bool { return r.Certificates == 168*time.Hour && r.OCSPResponses == 24*time.Hour }},
		{"a short interval bounds the default run time", "retention:\n  interval: 30s\n",
			func(r Retention) bool { return r.Interval == 30*time.Second && r.MaxRun == 30*time.Second }},
		{"batches and pauses are accepted within bounds", "retention:\n  batch_size: 500\n  batch_pause: 1s\n  max_run: 5m\n",
			func(r Retention) bool {
				return r.BatchSize == 500 && r.BatchPause == time.Second && r.MaxRun == 5*time.Minute
			}},
		{"days are not Go syntax and are refused", "retention:\n  certificates: 90d\n", nil},
		{"certificates kept less than an hour are refused", "retention:\n  certificates: 30m\n", nil},
		{"a negative retention is refused", "retention:\n  certificates: -1h\n", nil},
		{"OCSP responses kept longer than their certificates are refused", "retention:\n  certificates: 2h\n  ocsp_responses: 3h\n", nil},
		{"authorization reports kept less than an hour are refused", "retention:\n  authz_reports: 10m\n", nil},
		{"an interval under ten seconds is refused", "retention:\n  interval: 1s\n", nil},
		{"a batch larger than 10000 rows is refused", "retention:\n  batch_size: 20000\n", nil},
		{"a negative batch size is refused", "retention:\n  batch_size: -1\n", nil},
		{"a run longer than the interval is refused", "retention:\n  interval: 1m\n  max_run: 2m\n", nil},
		{"retention.denials is unknown (denials live in the audit log) and refused", "retention:\n  denials: 24h\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeFile(t, tt.yaml), MapEnv(nil))
			if tt.check == nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Load = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tt.check(c.Retention) {
				t.Fatalf("retention %+v", c.Retention)
			}
		})
	}
}
