package der

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The headers are cryptobyte's, at each boundary of the length's encoding.
func TestHeaderIsCryptobytes(t *testing.T) {
	for _, n := range []int{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffff, 0x1000000} {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, n)) })
		want := b.BytesOrPanic()
		want = want[:len(want)-n]
		if got := AppendHeader([]byte{1}, byte(cbasn1.BIT_STRING), n); !bytes.Equal(got[1:], want) {
			t.Errorf("header of %d bytes: %x, want %x", n, got[1:], want)
		}
		if got := HeaderLen(n); got != len(want) {
			t.Errorf("header size of %d bytes: %d, want %d", n, got, len(want))
		}
	}
}

// A signature tail is cryptobyte's algorithm bytes and BIT STRING, and
// SignatureLen its size, at each boundary of the BIT STRING's length.
func TestSignatureTailIsCryptobytes(t *testing.T) {
	algo := []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	for _, n := range []int{0, 1, 0x7e, 0x7f, 0xfe, 0xff, 0xfffe, 0xffff} {
		sig := bytes.Repeat([]byte{0xa5}, n)
		var b cryptobyte.Builder
		b.AddBytes(algo)
		b.AddASN1BitString(sig)
		want := b.BytesOrPanic()
		got := AppendSignature([]byte{1}, algo, sig)
		if !bytes.Equal(got[1:], want) {
			t.Errorf("tail of a %d-byte signature: %x, want %x", n, got[1:], want)
		}
		if SignatureLen(len(algo), n) != len(want) {
			t.Errorf("tail size of a %d-byte signature: %d, want %d", n, SignatureLen(len(algo), n), len(want))
		}
	}
}
