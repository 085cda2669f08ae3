//go:build cgo

package hsm_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// CKR_GENERAL_ERROR from C_GenerateKeyPair means a refused template on some
// tokens (tpm2-pkcs11), a lost device on others and a transient failure
// under load on SoftHSM. The store asks the token something else before
// deciding; these run through the hang module, which fails generation on
// demand in front of a real SoftHSM token.
func TestGenerateClassifiesGeneralError(t *testing.T) {
	h := testkit.HangingSoftHSM(t)
	s, err := hsm.OpenPKCS11(h.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()

	t.Run("refused while the token answers: ErrUnsupported, no reconnect", func(t *testing.T) {
		h.SetFailure(t, testkit.FailGenerate, true)
		_, err := s.Generate(ctx, "refused", hsm.ECDSAP256)
		if !errors.Is(err, hsm.ErrUnsupported) || errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("Generate: err = %v, want ErrUnsupported and not ErrUnavailable", err)
		}
		if !strings.Contains(err.Error(), "ca hsm check") {
			t.Errorf("error %q does not point at `ca hsm check`", err)
		}
		if n := hsm.LoginAttempts(s); n != 1 {
			t.Errorf("%d logins, want 1: a refused template must not reconnect", n)
		}
		h.SetFailure(t, testkit.FailGenerate, false)
		if _, err := s.Generate(ctx, "refused", hsm.ECDSAP256); err != nil {
			t.Fatalf("Generate after the failure ended: %v (no key may have been left behind)", err)
		}
	})

	t.Run("once under load: absorbed by one retry", func(t *testing.T) {
		h.SetFailure(t, testkit.FailGenerateOnce, true)
		if _, err := s.Generate(ctx, "flaky", hsm.ECDSAP256); err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if h.FailureArmed(testkit.FailGenerateOnce) {
			t.Fatal("the injected failure never fired")
		}
		if n := hsm.LoginAttempts(s); n != 1 {
			t.Errorf("%d logins, want 1", n)
		}
	})

	t.Run("the token answers nothing: ErrUnavailable and a reconnect", func(t *testing.T) {
		h.SetFailure(t, testkit.FailDevice, true)
		_, err := s.Generate(ctx, "lost", hsm.ECDSAP256)
		if !errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, hsm.ErrUnsupported) {
			t.Fatalf("Generate: err = %v, want ErrUnavailable and not ErrUnsupported", err)
		}
		h.SetFailure(t, testkit.FailDevice, false)
		if _, err := s.Generate(ctx, "lost", hsm.ECDSAP256); err != nil {
			t.Fatalf("Generate after the device came back: %v", err)
		}
		if n := hsm.LoginAttempts(s); n != 2 {
			t.Errorf("%d logins, want 2 (one reconnect)", n)
		}
	})
}

// A template the token refuses outright (here a private key template whose
// CKA_CLASS says secret key) is a configuration error.
func TestGenerateRefusedTemplateIsUnsupported(t *testing.T) {
	restore := hsm.WeakenTemplate(crypto11.CkaClass, pkcs11.CKO_SECRET_KEY)
	defer restore()
	s := testkit.SoftHSMKeyStore(t)
	_, err := s.Generate(context.Background(), "inconsistent", hsm.ECDSAP256)
	if !errors.Is(err, hsm.ErrUnsupported) || errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Generate: err = %v, want ErrUnsupported and not ErrUnavailable", err)
	}
	if n := hsm.LoginAttempts(s); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

// A token that ignores part of the template gives a weaker key; the store
// reads the attributes back, names the attribute, destroys the key and
// hands nothing out.
func TestGenerateRefusesWeakerKey(t *testing.T) {
	for _, c := range []struct {
		attr crypto11.AttributeType
		v    bool
		name string
		kt   hsm.KeyType
	}{
		{crypto11.CkaDerive, true, "CKA_DERIVE", hsm.ECDSAP256},
		{crypto11.CkaDecrypt, true, "CKA_DECRYPT", hsm.RSA3072},
		{crypto11.CkaUnwrap, true, "CKA_UNWRAP", hsm.RSA3072},
		{crypto11.CkaSensitive, false, "CKA_SENSITIVE", hsm.ECDSAP384},
		{crypto11.CkaExtractable, true, "CKA_EXTRACTABLE", hsm.ECDSAP256},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := testkit.SoftHSMKeyStore(t)
			restore := hsm.WeakenTemplate(c.attr, c.v)
			_, err := s.Generate(context.Background(), "weak", c.kt)
			restore()
			var weak *hsm.WeakKeyError
			if !errors.As(err, &weak) || !errors.Is(err, hsm.ErrUnsupported) {
				t.Fatalf("Generate: err = %v, want a WeakKeyError", err)
			}
			if weak.Attribute != c.name || !strings.Contains(err.Error(), c.name) {
				t.Errorf("error names %q (%v), want %s", weak.Attribute, err, c.name)
			}
			labels, err := s.KeyLabels(context.Background())
			if err != nil {
				t.Fatalf("KeyLabels: %v", err)
			}
			for _, l := range labels {
				if l == "weak" {
					t.Fatal("the weak key is still on the token")
				}
			}
		})
	}
}

func TestCheckKeyTypesOnSoftHSM(t *testing.T) {
	t.Parallel()
	s := testkit.SoftHSMKeyStore(t)
	ctx := context.Background()
	if err := s.CheckKeyTypes(ctx, allKeyTypes...); err != nil {
		t.Fatalf("CheckKeyTypes: %v", err)
	}
	mechs, err := s.Mechanisms(ctx)
	if err != nil {
		t.Fatalf("Mechanisms: %v", err)
	}
	ec, ok := mechs[pkcs11.CKM_ECDSA]
	if !ok || !ec.Has(pkcs11.CKF_SIGN) || ec.Name != "CKM_ECDSA" {
		t.Errorf("CKM_ECDSA = %+v, %v", ec, ok)
	}
	info, err := s.Token(ctx)
	if err != nil || info.Label == "" || !strings.Contains(info.Manufacturer, "SoftHSM") {
		t.Errorf("Token = %+v, %v", info, err)
	}
}

// A token without a mechanism (opencryptoki's soft token has no EC) fails
// the start-up check with one line naming it.
func TestCheckMechanismsNamesTheMissingOne(t *testing.T) {
	t.Parallel()
	rsaOnly := map[uint]hsm.Mechanism{
		pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: {MinKeySize: 512, MaxKeySize: 4096, Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		pkcs11.CKM_RSA_PKCS:              {MinKeySize: 512, MaxKeySize: 4096, Flags: pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
	}
	if err := hsm.CheckMechanisms("ock", rsaOnly, []hsm.KeyType{hsm.RSA3072}); err != nil {
		t.Fatalf("rsa-3072: %v", err)
	}
	for _, c := range []struct {
		mechs map[uint]hsm.Mechanism
		kt    hsm.KeyType
		want  string
	}{
		{rsaOnly, hsm.ECDSAP256, "CKM_EC_KEY_PAIR_GEN"},
		{map[uint]hsm.Mechanism{
			pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: {MinKeySize: 1024, MaxKeySize: 2048, Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		}, hsm.RSA3072, "1024 to 2048 bits"},
		{map[uint]hsm.Mechanism{
			pkcs11.CKM_EC_KEY_PAIR_GEN: {Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
			pkcs11.CKM_ECDSA:           {Flags: pkcs11.CKF_VERIFY},
		}, hsm.ECDSAP384, "CKM_ECDSA without CKF_SIGN"},
	} {
		err := hsm.CheckMechanisms("tok", c.mechs, []hsm.KeyType{c.kt})
		if !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line with %q", c.kt, err, c.want)
		}
	}
}
