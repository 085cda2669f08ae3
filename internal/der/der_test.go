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
