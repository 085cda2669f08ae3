package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// errHSMCheckFailed is returned when `ca hsm check` found a key type the
// token cannot serve; the report is already printed.
var errHSMCheckFailed = errors.New("the token cannot serve every key type checked (see above)")

// cmdHSM dispatches `ca hsm <subcommand>`.
func cmdHSM(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return fmt.Errorf("%w: ca hsm check [--config F] [--all-key-types | --key-type T ...]", errUsage)
	}
	return cmdHSMCheck(ctx, args[1:], getenv, stdout, stderr)
}

// cmdHSMCheck is what an operator runs before pointing the CA at a new
// token: it prints the token and the mechanisms the CA uses, then for each
// key type the configuration uses (issuer.key_type, jwt.key_type,
// ocsp.key_type; or the ones named) checks the mechanisms, makes a
// throwaway key, signs and verifies with it, reads its attributes back and
// removes it. Exit 1 when a key type fails.
func cmdHSMCheck(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsm check", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	all := fs.Bool("all-key-types", false, "check every key type the CA supports, not only the configured ones")
	var named stringsFlag
	fs.Var(&named, "key-type", "check this key `TYPE` (repeatable) instead of the configured ones")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if cfg.PKCS11.Module == "" {
		return fmt.Errorf("%w: no PKCS#11 module configured (pkcs11.module or CA_PKCS11_MODULE)", errUsage)
	}
	var kts []hsm.KeyType
	switch {
	case *all:
		kts = []hsm.KeyType{hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA3072}
	case len(named) > 0:
		for _, n := range named {
			kt := hsm.KeyType(n)
			if !kt.Valid() {
				return fmt.Errorf("%w: --key-type %q is not one of ecdsa-p256, ecdsa-p384, rsa-3072", errUsage, n)
			}
			kts = append(kts, kt)
		}
	default:
		for _, kt := range cfg.KeyTypes() {
			kts = append(kts, hsm.KeyType(kt))
		}
	}
	log := newLogger(cfg, stderr)
	ks, err := hsm.OpenPKCS11(hsm.PKCS11Config{Module: cfg.PKCS11.Module, TokenLabel: cfg.PKCS11.Token, PIN: cfg.PKCS11.PIN.Reveal()},
		log, hsm.WithClock(clock.Real{}))
	if err != nil {
		return err
	}
	defer ks.Close()

	info, err := ks.Token(ctx)
	if err != nil {
		return err
	}
	mechs, err := ks.Mechanisms(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token       %s (%s, %s; hardware %s, firmware %s)\n", info.Label, info.Manufacturer, info.Model,
		info.HardwareVersion, info.FirmwareVersion)
	fmt.Fprintf(stdout, "module      %s\n", cfg.PKCS11.Module)
	fmt.Fprintf(stdout, "configured  issuer.key_type=%s jwt.key_type=%s ocsp.key_type=%s\n",
		cfg.Issuer.KeyType, cfg.JWTKeyType(), cfg.OCSPKeyType())
	fmt.Fprintf(stdout, "mechanisms  %d listed; the ones the CA uses:\n", len(mechs))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, m := range hsm.ReportedMechanisms {
		mi, ok := mechs[m]
		if !ok {
			fmt.Fprintf(tw, "  %s\tabsent\n", hsm.MechanismName(m))
			continue
		}
		fmt.Fprintf(tw, "  %s\tkey sizes %d-%d\t%s\n", hsm.MechanismName(m), mi.MinKeySize, mi.MaxKeySize, mechFlags(mi.Flags))
	}
	_ = tw.Flush()

	failed := false
	for _, kt := range kts {
		line, err := checkKeyType(ctx, ks, kt)
		if err != nil {
			failed = true
			fmt.Fprintf(stdout, "%-11s FAIL: %v\n", kt, err)
			continue
		}
		fmt.Fprintf(stdout, "%-11s ok: %s\n", kt, line)
	}
	if failed {
		return errHSMCheckFailed
	}
	fmt.Fprintln(stdout, "result      ok: the token serves every key type checked")
	return nil
}

// mechFlags names the CKF_* flags that matter to the CA.
func mechFlags(f uint) string {
	var out []string
	for _, x := range []struct {
		f    uint
		name string
	}{{0x1, "hw"}, {0x10000, "generate_key_pair"}, {0x800, "sign"}, {0x2000, "verify"}, {0x100, "encrypt"}, {0x200, "decrypt"}} {
		if f&x.f != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// checkKeyType checks one key type end to end on the token and removes the
// throwaway key whatever happens.
func checkKeyType(ctx context.Context, ks *hsm.PKCS11Store, kt hsm.KeyType) (string, error) {
	if err := ks.CheckKeyTypes(ctx, kt); err != nil {
		return "", err
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	name := "hsm-check-" + string(kt) + "-" + hex.EncodeToString(b)
	start := time.Now()
	key, err := ks.Generate(ctx, name, kt)
	if err != nil {
		return "", err
	}
	genTime := time.Since(start)
	line, err := signAndInspect(ctx, ks, key)
	derr := ks.Delete(context.WithoutCancel(ctx), key.URI)
	if errors.Is(derr, hsm.ErrUnavailable) {
		// tpm2-pkcs11 fails C_DestroyObject on a key whose signature it
		// just refused until the store has reconnected: once more.
		derr = ks.Delete(context.WithoutCancel(ctx), key.URI)
	}
	if derr != nil {
		return "", errors.Join(err, fmt.Errorf("removing the throwaway key %s: %w", name, derr))
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("generated in %s; %s; removed", genTime.Round(time.Millisecond), line), nil
}

func signAndInspect(ctx context.Context, ks *hsm.PKCS11Store, key hsm.Key) (string, error) {
	msg := []byte("ca hsm check")
	var (
		digest []byte
		h      crypto.Hash
	)
	if pub, ok := key.Signer.Public().(*ecdsa.PublicKey); ok && pub.Curve.Params().BitSize == 384 {
		d := sha512.Sum384(msg)
		digest, h = d[:], crypto.SHA384
	} else {
		d := sha256.Sum256(msg)
		digest, h = d[:], crypto.SHA256
	}
	sig, err := key.Signer.Sign(rand.Reader, digest, h)
	if err != nil {
		return "", err
	}
	switch pub := key.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return "", errors.New("the token's ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, h, digest, sig); err != nil {
			return "", fmt.Errorf("the token's RSA signature does not verify: %w", err)
		}
	}
	a, err := ks.Attributes(ctx, key.URI)
	if err != nil {
		return "", err
	}
	flag := func(name string, v bool) string {
		if v {
			return name
		}
		return "!" + name
	}
	attrs := strings.Join([]string{
		flag("sensitive", a.Sensitive), flag("extractable", a.Extractable), flag("always_sensitive", a.AlwaysSensitive),
		flag("never_extractable", a.NeverExtractable), flag("local", a.Local), flag("sign", a.Sign),
		flag("decrypt", a.Decrypt), flag("unwrap", a.Unwrap), flag("derive", a.Derive),
	}, " ")
	return fmt.Sprintf("signed+verified (%s); private key %s", h, attrs), nil
}
