//go:build cgo

package hsm

import (
	"context"
	"fmt"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// mechRequirement is one mechanism a key type needs, with the flag it must
// carry and, for RSA, the key size it must cover.
type mechRequirement struct {
	mech     uint
	name     string
	flag     uint
	flagName string
	bits     uint // 0: not checked (EC tokens report sizes in bits or bytes)
}

// requirements lists what generating and signing with a key of type kt
// needs: the key pair generation mechanism and the raw signing mechanism
// crypto11 uses (CKM_ECDSA on a digest; CKM_RSA_PKCS with the DigestInfo
// prefix, which is what crypto/x509, OCSP and RS256 JWTs use).
func requirements(kt KeyType) []mechRequirement {
	switch kt {
	case ECDSAP256, ECDSAP384:
		return []mechRequirement{
			{pkcs11.CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", pkcs11.CKF_GENERATE_KEY_PAIR, "CKF_GENERATE_KEY_PAIR", 0},
			{pkcs11.CKM_ECDSA, "CKM_ECDSA", pkcs11.CKF_SIGN, "CKF_SIGN", 0},
		}
	case RSA3072:
		return []mechRequirement{
			{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN", pkcs11.CKF_GENERATE_KEY_PAIR, "CKF_GENERATE_KEY_PAIR", 3072},
			{pkcs11.CKM_RSA_PKCS, "CKM_RSA_PKCS", pkcs11.CKF_SIGN, "CKF_SIGN", 3072},
		}
	}
	return nil
}

// mechNames names the mechanisms `ca hsm check` reports on.
var mechNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:              "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_PKCS_PSS:          "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_SHA256_RSA_PKCS:       "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_EC_KEY_PAIR_GEN:       "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                 "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256:          "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:          "CKM_ECDSA_SHA384",
	pkcs11.CKM_SHA256:                "CKM_SHA256",
	pkcs11.CKM_AES_KEY_GEN:           "CKM_AES_KEY_GEN",
}

// ReportedMechanisms are the mechanisms `ca hsm check` prints, in order:
// the ones key types need and the optional ones the CA can use.
var ReportedMechanisms = []uint{
	pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS,
	pkcs11.CKM_RSA_PKCS_PSS,
}

// MechanismName is the CKM_* name of m, or its hex value.
func MechanismName(m uint) string {
	if n, ok := mechNames[m]; ok {
		return n
	}
	return fmt.Sprintf("0x%08x", m)
}

// withModule runs fn with a second handle on the PKCS#11 module and the
// slot of this store's token. crypto11 does not expose C_GetMechanismList,
// so the module is opened again (dlopen hands back the library crypto11
// already initialised); it is never initialised or finalized through this
// handle, and the call runs on a worker while the store's context keeps the
// module initialised.
func (s *PKCS11Store) withModule(ctx context.Context, fn func(p *pkcs11.Ctx, slot uint) error) error {
	c, err := s.connection(ctx)
	if err != nil {
		return err
	}
	return s.do(ctx, c, s.cfg.OpTimeout, func(*crypto11.Context) error {
		p := pkcs11.New(s.cfg.Module)
		if p == nil {
			return fmt.Errorf("hsm: cannot load PKCS#11 module %s", s.cfg.Module)
		}
		defer p.Destroy()
		slots, err := p.GetSlotList(true)
		if err != nil {
			return err
		}
		for _, slot := range slots {
			ti, err := p.GetTokenInfo(slot)
			if err != nil {
				return err
			}
			if strings.TrimRight(ti.Label, " \x00") == s.cfg.TokenLabel {
				return fn(p, slot)
			}
		}
		return fmt.Errorf("%w: token %q is no longer present", ErrUnavailable, s.cfg.TokenLabel)
	})
}

// Token describes the token (C_GetTokenInfo).
func (s *PKCS11Store) Token(ctx context.Context) (TokenInfo, error) {
	var out TokenInfo
	err := s.withModule(ctx, func(p *pkcs11.Ctx, slot uint) error {
		ti, err := p.GetTokenInfo(slot)
		if err != nil {
			return err
		}
		trim := func(v string) string { return strings.TrimRight(v, " \x00") }
		out = TokenInfo{
			Label: trim(ti.Label), Manufacturer: trim(ti.ManufacturerID), Model: trim(ti.Model), Serial: trim(ti.SerialNumber),
			HardwareVersion: fmt.Sprintf("%d.%d", ti.HardwareVersion.Major, ti.HardwareVersion.Minor),
			FirmwareVersion: fmt.Sprintf("%d.%d", ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor),
			MaxSessions:     ti.MaxSessionCount,
		}
		return nil
	})
	if err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: token info: %w", err)
	}
	return out, nil
}

// Mechanisms lists the token's mechanisms with their information
// (C_GetMechanismList, C_GetMechanismInfo).
func (s *PKCS11Store) Mechanisms(ctx context.Context) (map[uint]Mechanism, error) {
	out := map[uint]Mechanism{}
	err := s.withModule(ctx, func(p *pkcs11.Ctx, slot uint) error {
		list, err := p.GetMechanismList(slot)
		if err != nil {
			return err
		}
		for _, m := range list {
			info, err := p.GetMechanismInfo(slot, []*pkcs11.Mechanism{m})
			if err != nil {
				return fmt.Errorf("C_GetMechanismInfo(%s): %w", MechanismName(m.Mechanism), err)
			}
			out[m.Mechanism] = Mechanism{Type: m.Mechanism, Name: MechanismName(m.Mechanism),
				MinKeySize: info.MinKeySize, MaxKeySize: info.MaxKeySize, Flags: info.Flags}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: mechanisms: %w", err)
	}
	return out, nil
}

// CheckKeyTypes checks that the token has the mechanisms every key type in
// kts needs. A missing mechanism, flag or key size fails with one line
// naming it, wrapping ErrUnsupported; a token that cannot be asked fails
// with ErrUnavailable.
func (s *PKCS11Store) CheckKeyTypes(ctx context.Context, kts ...KeyType) error {
	mechs, err := s.Mechanisms(ctx)
	if err != nil {
		return err
	}
	return checkMechanisms(s.cfg.TokenLabel, mechs, kts)
}

func checkMechanisms(token string, mechs map[uint]Mechanism, kts []KeyType) error {
	for _, kt := range kts {
		if !kt.Valid() {
			return fmt.Errorf("%w: %q", ErrBadKeyType, kt)
		}
		for _, r := range requirements(kt) {
			m, ok := mechs[r.mech]
			switch {
			case !ok:
				return fmt.Errorf("%w: token %q has no %s, which %s keys need", ErrUnsupported, token, r.name, kt)
			case !m.Has(r.flag):
				return fmt.Errorf("%w: token %q lists %s without %s, which %s keys need", ErrUnsupported, token, r.name, r.flagName, kt)
			case r.bits != 0 && (m.MinKeySize > r.bits || m.MaxKeySize < r.bits):
				return fmt.Errorf("%w: token %q offers %s for %d to %d bits only, %s keys need %d",
					ErrUnsupported, token, r.name, m.MinKeySize, m.MaxKeySize, kt, r.bits)
			}
		}
	}
	return nil
}
