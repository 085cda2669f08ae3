package hsm

import (
	"bytes"
	"errors"
	"testing"
)

func TestParsePKCS11URI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want pkcs11URI
	}{
		{"token and object", "pkcs11:token=ca;object=root",
			pkcs11URI{Token: "ca", HasToken: true, Object: "root", HasObject: true}},
		{"percent-encoded label and binary id", "pkcs11:token=My%20Token;id=%01%ff%3B",
			pkcs11URI{Token: "My Token", HasToken: true, ID: []byte{1, 0xff, ';'}, HasID: true}},
		{"the scheme is case-insensitive and descriptive attributes are ignored",
			"PKCS11:manufacturer=SoftHSM%20project;serial=abc;object=k;type=private;x-vendor=1",
			pkcs11URI{Object: "k", HasObject: true}},
		{"path characters RFC 7512 allows unencoded", "pkcs11:object=a:b[c]@!$'()*+,=&",
			pkcs11URI{Object: "a:b[c]@!$'()*+,=&", HasObject: true}},
		{"module query attributes are ignored", "pkcs11:object=k?module-path=/usr/lib/x.so&pin-source=file:/p",
			pkcs11URI{Object: "k", HasObject: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePKCS11URI(tc.in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got.Token != tc.want.Token || got.HasToken != tc.want.HasToken || got.Object != tc.want.Object ||
				got.HasObject != tc.want.HasObject || !bytes.Equal(got.ID, tc.want.ID) || got.HasID != tc.want.HasID {
				t.Errorf("parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParsePKCS11URIRejects(t *testing.T) {
	for _, in := range []string{
		"", "pkcs11", "pkcs11:", "pkcs11:token=ca", "pkcs11:object=", "pkcs11:id=",
		"pkcs11:object=a;object=b", "pkcs11:object=a b", "pkcs11:object=a/b", "pkcs11:object=%4",
		"pkcs11:object=%g0", "pkcs11:object", "pkcs11:=x", "pkcs11:object=a;;", "pkcs11:type=cert;object=a",
		"pkcs11:object=a?pin-value=1234", "pkcs11:object=a?unknown=1", "pkcs11:object=a?module-path=/a&module-path=/b",
		"pkcs11:bogus=1;object=a", "softkey:a",
	} {
		if _, err := parsePKCS11URI(in); !errors.Is(err, ErrBadURI) {
			t.Errorf("parse(%q): err = %v, want ErrBadURI", in, err)
		}
	}
}

func TestFormatPKCS11URIEncodesAsRFC7512Says(t *testing.T) {
	u := pkcs11URI{Token: "CA token #1;x", HasToken: true, Object: "issuing-ca.v2", HasObject: true}
	if got, want := u.String(), "pkcs11:token=CA%20token%20%231%3Bx;object=issuing-ca.v2"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	u = pkcs11URI{Token: "t", HasToken: true, ID: []byte{0xab, 'z'}, HasID: true}
	if got, want := u.String(), "pkcs11:token=t;id=%AB%7A"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// FuzzParsePKCS11URI checks the parser never panics and that whatever it
// accepts survives a format/parse round trip.
func FuzzParsePKCS11URI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=ca;object=root", "pkcs11:token=My%20Token;id=%01%ff",
		"pkcs11:object=k?module-path=/x.so", "pkcs11:object=%", "pkcs11:;;;", "softkey:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parsePKCS11URI(s)
		if err != nil {
			if !errors.Is(err, ErrBadURI) {
				t.Fatalf("error does not wrap ErrBadURI: %v", err)
			}
			return
		}
		again, err := parsePKCS11URI(u.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", u.String(), s, err)
		}
		if again.Token != u.Token || again.Object != u.Object || !bytes.Equal(again.ID, u.ID) ||
			again.HasToken != u.HasToken || again.HasObject != u.HasObject || again.HasID != u.HasID {
			t.Fatalf("round trip changed %+v into %+v", u, again)
		}
	})
}

// FuzzParseSoftkeyURI checks that every accepted software key URI names a
// plain file inside the key directory.
func FuzzParseSoftkeyURI(f *testing.F) {
	for _, s := range []string{"softkey:root", "softkey:../x", "softkey:a/b", "softkey:.x", "softkey:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := parseSoftkeyURI(s)
		if err != nil {
			if !errors.Is(err, ErrBadURI) {
				t.Fatalf("error does not wrap ErrBadURI: %v", err)
			}
			return
		}
		if err := validateName(name); err != nil {
			t.Fatalf("accepted invalid name %q", name)
		}
		for _, c := range []byte(name) {
			if c == '/' || c == '\\' || c == 0 {
				t.Fatalf("accepted name with separator: %q", name)
			}
		}
		if name == "." || name == ".." || name[0] == '.' {
			t.Fatalf("accepted dot name %q", name)
		}
	})
}
