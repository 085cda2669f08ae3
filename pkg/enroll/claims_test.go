package enroll

import (
	"errors"
	"reflect"
	"testing"

	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// claimsOutcome is what Verify makes of a token's payload: "invalid" (not a
// valid JWT claims set), "not an object", or the registered claims.
type claimsOutcome struct {
	refused string
	reg     jwt.Claims
	claims  map[string]any
}

// twoDecodings is how Verify read a payload before registeredClaims: into
// jwt.Claims, then into the map.
func twoDecodings(payload []byte) claimsOutcome {
	var reg jwt.Claims
	var m map[string]any
	if josejson.Unmarshal(payload, &reg) != nil || josejson.Unmarshal(payload, &m) != nil {
		return claimsOutcome{refused: "invalid"}
	}
	if m == nil {
		return claimsOutcome{refused: "not an object"}
	}
	return claimsOutcome{reg: reg, claims: m}
}

// oneDecoding is how Verify reads it now.
func oneDecoding(payload []byte) claimsOutcome {
	var v any
	if josejson.Unmarshal(payload, &v) != nil {
		return claimsOutcome{refused: "invalid"}
	}
	claims, reg, err := claimsOf(v)
	var e *Error
	switch {
	case errors.As(err, &e) && e.Detail == "claims are not a JSON object":
		return claimsOutcome{refused: "not an object"}
	case err != nil:
		return claimsOutcome{refused: "invalid"}
	}
	return claimsOutcome{reg: reg, claims: claims}
}

var claimsSeeds = []string{
	`{"iss":"https://idp","sub":"s","aud":"a","exp":1700000300,"nbf":1700000000,"iat":1700000000,"jti":"j","repository":"acme/x"}`,
	`{"iss":"https://idp","aud":["a","b"],"exp":1.7e9,"iat":1700000000.75}`,
	`{"aud":[]}`, `{"aud":null}`, `{"aud":["a",1]}`, `{"aud":["a",null]}`, `{"aud":5}`, `{"aud":{}}`, `{"aud":true}`,
	`{"iss":null,"sub":null,"jti":null,"exp":null,"nbf":null,"iat":null}`,
	`{"iss":5}`, `{"iss":true}`, `{"iss":{}}`, `{"iss":[]}`, `{"sub":1.5}`, `{"jti":["x"]}`,
	`{"exp":"1700000000"}`, `{"exp":true}`, `{"exp":{}}`, `{"exp":[1]}`, `{"nbf":"x"}`, `{"iat":false}`,
	`{"exp":4611686018427387904}`, `{"exp":4611686018427387903}`, `{"exp":-4611686018427387904}`, `{"exp":1e400}`,
	`{"exp":-1}`, `{"exp":0}`, `{"exp":-0}`, `{"exp":1e-7}`,
	`{"ISS":"x","Exp":"y","AUD":5}`, `{"iss":"a","iss":"b"}`, `{"x":1,"x":2}`, `{"x":{"y":1,"y":2}}`,
	`null`, `[]`, `[1]`, `"x"`, `5`, `true`, `{}`, `{"iss":"a"} x`, `{"iss":"\u00e9\ud800"}`, ``, `{`,
}

// TestRegisteredClaimsMatchJWTClaims holds Verify's one decoding of the
// payload (into an any, then claimsOf) to the answers of the two it
// replaced (jwt.Claims, then map[string]any): the same refusals, the same
// registered claims, the same claims.
func TestRegisteredClaimsMatchJWTClaims(t *testing.T) {
	for _, p := range claimsSeeds {
		if got, want := oneDecoding([]byte(p)), twoDecodings([]byte(p)); !reflect.DeepEqual(got, want) {
			t.Errorf("payload %s: one decoding = %+v, two = %+v", p, got, want)
		}
	}
}

func FuzzRegisteredClaims(f *testing.F) {
	for _, p := range claimsSeeds {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if got, want := oneDecoding(payload), twoDecodings(payload); !reflect.DeepEqual(got, want) {
			t.Errorf("payload %q: one decoding = %+v, two = %+v", payload, got, want)
		}
	})
}
