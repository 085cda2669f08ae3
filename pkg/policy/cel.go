package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/workload-ca/workload-ca/pkg/celexpr"
)

// Bounds on CEL conditions. A condition runs on attacker-influenced claims, so
// every evaluation is limited in cost and in wall time, and checked for
// interruption while it iterates (pkg/celexpr holds the bounds this package
// shares with the authorization policy).
const (
	// MaxConditionBytes bounds the source length of one condition.
	MaxConditionBytes = celexpr.MaxBytes
	// ConditionCostLimit is the runtime cost budget of one evaluation (CEL
	// cost units: roughly one per operation and per element traversed).
	ConditionCostLimit = 100_000
	// ConditionTimeout bounds the wall time of one evaluation.
	ConditionTimeout = 100 * time.Millisecond
)

// errConditionFalse is the internal "evaluated to false" outcome.
var errConditionFalse = errors.New("condition is false")

// condition is a compiled CEL expression over `claims` that returns bool.
type condition struct {
	source string
	prg    cel.Program
}

func newCELEnv() (*cel.Env, error) {
	return celexpr.NewEnv(cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)))
}

// compileCondition parses and type-checks src, which must have type bool.
func compileCondition(env *cel.Env, src string) (*condition, error) {
	prg, err := celexpr.Compile(env, src, ConditionCostLimit)
	if err != nil {
		return nil, err
	}
	return &condition{source: src, prg: prg}, nil
}

// eval runs the condition. It returns nil when the condition is true,
// errConditionFalse when it is false, and another error when evaluation failed
// (a missing claim, a type mismatch, the cost limit or the timeout). Callers
// treat every non-nil result as "no match".
func (c *condition) eval(ctx context.Context, claims map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, ConditionTimeout)
	defer cancel()
	if claims == nil {
		claims = map[string]any{}
	}
	out, _, err := c.prg.ContextEval(ctx, map[string]any{"claims": claims})
	if err != nil {
		return fmt.Errorf("evaluating condition: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return fmt.Errorf("condition returned %s, want bool", out.Type())
	}
	if !b {
		return errConditionFalse
	}
	return nil
}
