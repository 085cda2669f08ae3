package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// cmdIssuers runs `ca issuers list|rotate|activate|tick`: CA rotation as a
// local operator tool on the configured database and key store (like `ca
// init`); POST /v1/issuers/rotate does the same over the API.
func cmdIssuers(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	c, err := newAdminCommand("issuers", "ca issuers list | rotate [--root] | activate [--force] | abandon [--id ID] | tick", args, getenv,
		"list", "rotate", "activate", "abandon", "tick")
	if err != nil {
		return err
	}
	var root, force *bool
	var abandonID *string
	switch c.sub {
	case "abandon":
		abandonID = c.fs.String("id", "", "abandon only if this issuer `ID` is among the prepared ones")
	case "rotate":
		root = c.fs.Bool("root", false, "rotate the root too (new root, cross-certificate signed by the old root)")
	case "activate":
		force = c.fs.Bool("force", false, "activate before the new root has been published for the overlap")
	}
	b, tr, err := c.open(ctx, getenv, stderr, nil)
	if err != nil {
		return err
	}
	defer b.Close()

	switch c.sub {
	case "list":
		list, err := b.store.ListIssuers(ctx)
		if err != nil {
			return err
		}
		tw := table(stdout, "ID\tKIND\tSTATE\tPARENT\tNOT AFTER\tKEY\tSUBJECT")
		for _, is := range list {
			subject, notAfter := "-", "-"
			if is.CertDER != nil {
				notAfter = is.NotAfter.Format(time.RFC3339)
				subject = subjectOf(is.CertDER)
			}
			key := "online"
			if is.KeyURI == "" {
				key = "none"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", is.ID, is.Kind, is.State, orDash(is.ParentID), notAfter, key, subject)
		}
		return tw.Flush()
	case "rotate":
		res, err := tr.rotator.Rotate(ctx, issuer.RotateOptions{Root: *root, Actor: *c.actor})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "prepared %s", res.Intermediate.ID)
		if res.Root != nil {
			fmt.Fprintf(stdout, " under new root %s (cross-certificate %s signed by the old root)", res.Root.ID, res.CrossCertificate.ID)
		}
		fmt.Fprintf(stdout, "; bundle version %d; `ca serve` activates it after %s (or run `ca issuers activate`)\n",
			res.Bundle.Sequence, res.ActivateAfter.Format(time.RFC3339))
	case "activate":
		res, err := tr.rotator.Activate(ctx, issuer.ActivateOptions{Actor: *c.actor, Force: *force})
		if errors.Is(err, issuer.ErrNotReady) {
			return fmt.Errorf("%w (wait for the overlap, or --force)", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "activated %s; retiring %s; bundle version %d\n",
			strings.Join(res.Activated, ", "), strings.Join(res.Retiring, ", "), res.Bundle.Sequence)
	case "abandon":
		res, err := tr.rotator.Abandon(ctx, issuer.AbandonOptions{ID: *abandonID, Actor: *c.actor})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "abandoned %s (now retired); deleted keys [%s]; bundle version %d\n",
			strings.Join(res.Abandoned, ", "), strings.Join(res.KeysDeleted, " "), res.Bundle.Sequence)
		if len(res.KeysLeft) > 0 {
			fmt.Fprintf(stderr, "could not delete keys [%s]: delete them from the key store by hand\n", strings.Join(res.KeysLeft, " "))
		}
	case "tick":
		res, err := tr.rotator.Tick(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "activated [%s] retiring [%s] retired [%s]; bundle version %d (pinned rollback: %v)\n",
			strings.Join(res.Activated, " "), strings.Join(res.Retiring, " "), strings.Join(res.Retired, " "), res.Bundle.Sequence, res.Pinned)
	}
	return nil
}

// cmdBundle runs `ca bundle versions|publish|rollback`: the published trust
// bundle versions, as a local operator tool.
func cmdBundle(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	c, err := newAdminCommand("bundle", "ca bundle versions | publish [--force] | rollback --to N [--force]", args, getenv,
		"versions", "publish", "rollback")
	if err != nil {
		return err
	}
	var force *bool
	var to *int64
	switch c.sub {
	case "publish":
		force = c.fs.Bool("force", false, "publish the computed bundle even while a rollback is pinned")
	case "rollback":
		to = c.fs.Int64("to", 0, "the earlier bundle `SEQUENCE` whose content to republish")
		force = c.fs.Bool("force", false, "roll back even when it is unsafe (drops the active issuer's anchor or a JWT key in use, or brings back a retired one)")
	}
	b, tr, err := c.open(ctx, getenv, stderr, func() error {
		if c.sub == "rollback" && *to <= 0 {
			return fmt.Errorf("%w: --to SEQUENCE is required", errUsage)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer b.Close()
	switch c.sub {
	case "versions":
		list, err := b.store.ListBundleVersions(ctx, 0, 50)
		if err != nil {
			return err
		}
		tw := table(stdout, "SEQUENCE\tCREATED\tACTOR\tREASON\tROLLED BACK FROM\tANCHORS (sha256 prefix)")
		for _, v := range list {
			c, err := bundle.ParseContent(v.Content)
			if err != nil {
				return err
			}
			var fps []string
			for _, der := range c.X509Authorities {
				h := sha256.Sum256(der)
				fps = append(fps, hex.EncodeToString(h[:6]))
			}
			from := "-"
			if v.RolledBackFrom != 0 {
				from = fmt.Sprint(v.RolledBackFrom)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.Sequence, v.CreatedAt.Format(time.RFC3339), v.Actor, v.Reason, from, strings.Join(fps, " "))
		}
		return tw.Flush()
	case "publish":
		res, err := tr.publisher.Publish(ctx, bundle.PublishOptions{Actor: *c.actor, Force: *force, Reason: "operator publish"})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bundle version %d (new: %v, pinned rollback kept: %v)\n", res.Version.Sequence, res.Changed, res.Pinned)
	case "rollback":
		v, err := tr.publisher.Rollback(ctx, bundle.RollbackOptions{ToSequence: *to, Actor: *c.actor, Force: *force})
		if errors.Is(err, bundle.ErrRollbackUnsafe) {
			return fmt.Errorf("%w (refused and audited; --force to roll back anyway)", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bundle version %d republishes version %d; it stays until the issuers change or `ca bundle publish --force`\n", v.Sequence, v.RolledBackFrom)
	}
	return nil
}

// subjectOf is the subject of a DER certificate, or "?" if it does not parse.
func subjectOf(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "?"
	}
	return c.Subject.String()
}
