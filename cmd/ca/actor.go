package main

import (
	"flag"
	"os"
	"os/user"
	"strings"
)

// cliActor is the --actor flag of the operator commands (`ca issuers`, `ca
// bundle`, `ca jwt-keys`). What --actor says is the operator's own claim; the
// audit entry also needs who ran the command on which machine, so the value
// recorded is the claim followed by the OS user (and the sudo caller, when
// run through sudo) and the host: "ca-cli [os:alice@ops-1]",
// "rollback-ticket-42 [os:root (sudo alice)@ops-1]". The suffix is appended
// last, after whatever --actor says.
type cliActor struct {
	value string // what is recorded
	claim string // what --actor said
	who   string // the OS suffix
}

// actorFlag registers --actor on fs and returns the actor to record.
func actorFlag(fs *flag.FlagSet, getenv env) *string {
	a := &cliActor{who: osIdentity(getenv)}
	_ = a.Set("ca-cli")
	fs.Var(a, "actor", "who is acting, for the audit log (the OS user and host are recorded with it)")
	return &a.value
}

func (a *cliActor) String() string {
	if a == nil {
		return ""
	}
	return a.claim
}

func (a *cliActor) Set(v string) error {
	a.claim = strings.TrimSpace(v)
	if a.claim == "" {
		a.claim = "ca-cli"
	}
	a.value = a.claim + " [" + a.who + "]"
	return nil
}

// osIdentity is "os:USER@HOST", with the sudo caller when there is one. What
// cannot be found is "unknown"; it never fails.
func osIdentity(getenv env) string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v, ok := getenv("USER"); ok && v != "" {
		name = v
	}
	if v, ok := getenv("SUDO_USER"); ok && v != "" && v != name {
		name += " (sudo " + v + ")"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return "os:" + name + "@" + host
}
