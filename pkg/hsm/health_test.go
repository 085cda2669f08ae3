package hsm_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

func TestKeyHealth(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	h := &hsm.KeyHealth{Clock: clk, Window: 30 * time.Second}
	if err := h.Err(); err != nil {
		t.Fatalf("fresh: %v", err)
	}
	h.Record(errors.New("database down")) // not about the key
	if err := h.Err(); err != nil {
		t.Fatalf("after an unrelated error: %v", err)
	}
	h.Record(fmt.Errorf("sign: %w", hsm.ErrUnsupported))
	if err := h.Err(); !errors.Is(err, hsm.ErrUnsupported) {
		t.Fatalf("after a refusal: %v", err)
	}
	clk.Advance(29 * time.Second)
	if h.Err() == nil {
		t.Fatal("the failure expired inside the window")
	}
	clk.Advance(time.Second)
	if err := h.Err(); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	h.Record(hsm.ErrUnavailable)
	h.Record(nil)
	if err := h.Err(); err != nil {
		t.Fatalf("after a success: %v", err)
	}
	var none *hsm.KeyHealth
	none.Record(hsm.ErrUnavailable)
	if none.Err() != nil {
		t.Fatal("nil KeyHealth is not healthy")
	}
}
