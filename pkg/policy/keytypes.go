package policy

import "fmt"

// KeyType names a workload key algorithm and size a rule may allow. RSA names
// are floors: rsa-3072 is a modulus of 3072 bits up to (excluding) 4096.
type KeyType string

// Key types a rule can list in key_types.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyEd25519   KeyType = "ed25519"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// DefaultKeyTypes are allowed by a rule that lists no key_types: every type
// that passes the CA's hard key-strength floor.
var DefaultKeyTypes = []KeyType{KeyECDSAP256, KeyECDSAP384, KeyEd25519, KeyRSA2048, KeyRSA3072, KeyRSA4096}

func parseKeyTypes(names []string) ([]KeyType, error) {
	if len(names) == 0 {
		return append([]KeyType(nil), DefaultKeyTypes...), nil
	}
	out := make([]KeyType, 0, len(names))
	seen := map[KeyType]bool{}
	for _, n := range names {
		kt := KeyType(n)
		known := false
		for _, d := range DefaultKeyTypes {
			known = known || d == kt
		}
		if !known {
			return nil, fmt.Errorf("unknown key type %q (known: %v)", n, DefaultKeyTypes)
		}
		if !seen[kt] {
			seen[kt] = true
			out = append(out, kt)
		}
	}
	return out, nil
}
