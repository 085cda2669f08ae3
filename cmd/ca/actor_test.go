package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestTheActorFlagRecordsTheOSIdentityAfterTheClaim(t *testing.T) {
	vars := map[string]string{"SUDO_USER": "alice-sudo-caller"}
	getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	tests := []struct {
		name, arg, claim string
	}{
		{"no --actor records ca-cli", "", "ca-cli"},
		{"--actor is kept as the claim", "ticket-42", "ticket-42"},
		{"a blank --actor is ca-cli", "  ", "ca-cli"},
		{"a claim that imitates the suffix is still followed by the real one", "x [os:bob@elsewhere]", "x [os:bob@elsewhere]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			actor := actorFlag(fs, getenv)
			var args []string
			if tt.arg != "" {
				args = []string{"--actor", tt.arg}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(*actor, tt.claim+" [os:") || !strings.HasSuffix(*actor, "]") ||
				!strings.Contains(*actor, "(sudo alice-sudo-caller)@") {
				t.Errorf("actor %q, want %q followed by the OS user, the sudo caller and the host", *actor, tt.claim)
			}
		})
	}
}
