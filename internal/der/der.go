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
