// Package der writes DER element headers of a known content length into a
// buffer sized in advance: one rule for the hand encoders of the hot paths
// (certificate assembly, CRLs, OCSP responses) that avoid cryptobyte's
// allocation per element.
package der

// HeaderLen is the size of the identifier and definite length octets of a
// DER element (tag number below 31) with n content bytes, n < 2^32.
func HeaderLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	case n <= 0xffff:
		return 4
	case n <= 0xffffff:
		return 5
	}
	return 6
}

// AppendHeader appends the identifier octet tag (tag number below 31) and
// the definite length n (n < 2^32).
func AppendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xff:
		return append(b, 0x81, byte(n))
	case n <= 0xffff:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// SignatureLen is the size of a signed structure's tail (RFC 5280 4.1,
// 5.1; RFC 6960 4.2.1): the signatureAlgorithm element of algo bytes and
// the signatureValue BIT STRING of a sig-byte signature.
func SignatureLen(algo, sig int) int { return algo + HeaderLen(1+sig) + 1 + sig }

// AppendSignature appends that tail: algo (an encoded AlgorithmIdentifier)
// and the BIT STRING of sig, no unused bits.
func AppendSignature(b, algo, sig []byte) []byte {
	b = append(b, algo...)
	b = AppendHeader(b, 0x03, 1+len(sig))
	return append(append(b, 0), sig...)
}
