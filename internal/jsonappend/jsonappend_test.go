package jsonappend

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	josejson "github.com/go-jose/go-jose/v4/json"
)

func TestValueMatchesMarshal(t *testing.T) {
	for _, v := range []any{
		nil, "", "a\x00\x7f\u00e9\u2028\u2029\ufffd\xff\xe2\x80", 0.0, math.Copysign(0, -1), 1.0, -1.5, 1e20, 1e21, 1e-6, 9.99e-7, 1e-7,
		123456789.123456789, math.MaxFloat64, math.SmallestNonzeroFloat64, true, false,
		[]any{}, []any(nil), []any{1.0, "x", nil}, map[string]any{}, map[string]any(nil),
		map[string]any{"b": 1.0, "a": map[string]any{"é": "<>", "E": []any{false}}, "": nil},
		3, int64(-4), []string{"x"}, json.Number("12"), time.Unix(1, 0).UTC(),
	} {
		want, werr := json.Marshal(v)
		got, gerr := Value([]byte("prefix"), v)
		if (werr != nil) != (gerr != nil) || werr == nil && string(got) != "prefix"+string(want) {
			t.Errorf("%#v: appended %s (%v), json.Marshal %s (%v)", v, got, gerr, want, werr)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := Value(nil, f); err == nil {
			t.Errorf("%v: no error, json.Marshal refuses it", f)
		}
	}
}

// FuzzMarshal holds String and Value to json.Marshal: a string of any
// bytes, and any JSON document as a decoder returns it.
func FuzzMarshal(f *testing.F) {
	f.Add("a\xffb\u2028<&>", []byte(`{"b":null,"a":[1e-7,2.5e21,-0.0,"\u00e9"],"c":{"z":true}}`))
	f.Add("\x00\"\\\t", []byte(`[1,2.5,"x"]`))
	f.Fuzz(func(t *testing.T, s string, doc []byte) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: appended %s, json.Marshal %s", s, got, want)
		}
		var v any
		if josejson.Unmarshal(doc, &v) != nil {
			return
		}
		want, werr := json.Marshal(v)
		got, gerr := Value(nil, v)
		if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got, want) {
			t.Errorf("document %s: appended %s (%v), json.Marshal %s (%v)", doc, got, gerr, want, werr)
		}
	})
}
