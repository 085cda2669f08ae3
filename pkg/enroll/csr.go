package enroll

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

// MaxCSRBytes bounds a PEM CSR; larger ones are refused before decoding.
const MaxCSRBytes = 64 << 10

// maxRSABits bounds RSA keys: larger moduli only cost verification time.
const maxRSABits = 8192

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// ParseCSR decodes and checks a PEM certificate request:
//   - at most MaxCSRBytes, exactly one PEM block of type CERTIFICATE REQUEST
//     (or the legacy NEW CERTIFICATE REQUEST), no PEM headers, nothing else
//     but whitespace around it (csr_malformed);
//   - a public key of an accepted type -- ECDSA P-256 or P-384, Ed25519, or
//     RSA of 2048 to 8192 bits with an odd public exponent of at least 65537
//     (csr_weak_key) -- checked before the signature so that huge keys cost
//     nothing;
//   - a valid self-signature with a non-SHA-1, non-MD5 algorithm, the proof of
//     possession (csr_bad_signature);
//   - no request for a CA certificate (basicConstraints CA:true), no name
//     constraints, and no critical extension other than subjectAltName,
//     keyUsage, extKeyUsage and basicConstraints (csr_forbidden_extension).
//
// Names in the CSR are not judged here: certificates get their names from
// policy (see Decider.Decide). Every error is a *Error.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	if len(pemBytes) > MaxCSRBytes {
		return nil, newErr(ReasonCSRMalformed, nil, "CSR larger than %d bytes", MaxCSRBytes)
	}
	trimmed := bytes.TrimSpace(pemBytes)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, newErr(ReasonCSRMalformed, nil, "CSR is not PEM (or has text before the PEM block)")
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, newErr(ReasonCSRMalformed, nil, "CSR PEM block does not decode")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, newErr(ReasonCSRMalformed, nil, "PEM block is %s, want CERTIFICATE REQUEST", quote(block.Type))
	}
	if len(block.Headers) != 0 {
		return nil, newErr(ReasonCSRMalformed, nil, "CSR PEM block must not carry headers")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, newErr(ReasonCSRMalformed, nil, "exactly one PEM block expected, found trailing data")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, newErr(ReasonCSRMalformed, err, "CSR does not parse")
	}
	if _, err := KeyTypeOf(csr.PublicKey); err != nil {
		return nil, err
	}
	switch csr.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.DSAWithSHA256, x509.UnknownSignatureAlgorithm:
		return nil, newErr(ReasonCSRBadSignature, nil, "CSR signature algorithm %s is not accepted", csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, newErr(ReasonCSRBadSignature, err, "CSR signature does not verify")
	}
	if err := checkCSRExtensions(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// KeyTypeOf classifies a workload public key, refusing (csr_weak_key) keys
// below the CA's floor or of unsupported kinds. RSA sizes map to the largest
// listed floor they reach (3072..4095 bits is rsa-3072).
func KeyTypeOf(pub crypto.PublicKey) (policy.KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return policy.KeyECDSAP256, nil
		case elliptic.P384():
			return policy.KeyECDSAP384, nil
		}
		return "", newErr(ReasonCSRWeakKey, nil, "ECDSA curve %s is not accepted (P-256 or P-384)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return policy.KeyEd25519, nil
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		switch {
		case bits < 2048:
			return "", newErr(ReasonCSRWeakKey, nil, "RSA key of %d bits is too weak (at least 2048)", bits)
		case bits > maxRSABits:
			return "", newErr(ReasonCSRWeakKey, nil, "RSA key of %d bits is not accepted (at most %d)", bits, maxRSABits)
		case k.E < 65537 || k.E%2 == 0:
			return "", newErr(ReasonCSRWeakKey, nil, "RSA public exponent %d is not accepted", k.E)
		case bits >= 4096:
			return policy.KeyRSA4096, nil
		case bits >= 3072:
			return policy.KeyRSA3072, nil
		}
		return policy.KeyRSA2048, nil
	case nil:
		return "", newErr(ReasonCSRWeakKey, nil, "CSR public key algorithm is not supported")
	}
	return "", newErr(ReasonCSRWeakKey, nil, "public key type %T is not supported", pub)
}

func checkCSRExtensions(csr *x509.CertificateRequest) error {
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			rest, err := asn1.Unmarshal(ext.Value, &bc)
			if err != nil || len(rest) != 0 {
				return newErr(ReasonCSRMalformed, err, "basicConstraints extension does not parse")
			}
			if bc.IsCA {
				return newErr(ReasonCSRForbiddenExtension, nil, "CSR requests a CA certificate (basicConstraints CA:true)")
			}
		case ext.Id.Equal(oidNameConstraints):
			return newErr(ReasonCSRForbiddenExtension, nil, "CSR requests name constraints")
		case ext.Critical && !ext.Id.Equal(oidSubjectAltName) && !ext.Id.Equal(oidKeyUsage) && !ext.Id.Equal(oidExtKeyUsage):
			return newErr(ReasonCSRForbiddenExtension, nil, "CSR requests unknown critical extension %s", ext.Id)
		}
	}
	return nil
}

// grantedNames intersects what the CSR asks for with what the policy match
// grants. A CSR may name a subset of the granted names: its URI SANs may only
// be the granted SPIFFE ID, its DNS SANs only granted DNS names (compared
// case-insensitively), and it may ask for no e-mail or IP SANs. Asking for
// anything else is a policy question, so it is refused with policy_denied
// (check requested_names), not csr_forbidden_extension. The certificate gets
// the granted SPIFFE ID always, and the CSR's DNS names if it names any, else
// all granted DNS names. The subject is ignored.
func grantedNames(csr *x509.CertificateRequest, m policy.Match) ([]string, error) {
	deny := func(format string, args ...any) error {
		e := newErr(ReasonPolicyDenied, nil, format, args...)
		e.Rule, e.Check = m.Rule, policy.CheckNames
		return e
	}
	for _, u := range csr.URIs {
		if u.String() != m.SPIFFEID {
			return nil, deny("CSR asks for URI %s; the rule grants %s", quote(u.String()), m.SPIFFEID)
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.IPAddresses) > 0 {
		return nil, deny("CSR asks for e-mail or IP names; only the SPIFFE ID and DNS names are issued")
	}
	if len(csr.DNSNames) == 0 {
		return append([]string(nil), m.DNSNames...), nil
	}
	want := map[string]bool{}
	for _, n := range csr.DNSNames {
		want[strings.ToLower(n)] = true
	}
	var out []string
	for _, n := range m.DNSNames {
		if want[n] {
			out = append(out, n)
			delete(want, n)
		}
	}
	for n := range want {
		return nil, deny("CSR asks for DNS name %s which the rule does not grant", quote(n))
	}
	return out, nil
}
