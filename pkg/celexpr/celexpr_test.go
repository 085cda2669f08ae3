package celexpr

import (
	"context"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
)

func testEnv(t *testing.T) *cel.Env {
	t.Helper()
	env, err := NewEnv(cel.Variable("items", cel.ListType(cel.StringType)))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestCompileRefusesWhatIsNotABoundedBoolCondition(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"an empty condition is refused", "", "condition is empty"},
		{"a blank condition is refused as empty", "  \n", "condition is empty"},
		{"a condition longer than MaxBytes is refused", strings.Repeat("true && ", MaxBytes/8) + "true", "condition longer than 4096 bytes"},
		{"a condition over an unknown variable does not compile", "claims.x == 1", "condition does not compile"},
		{"a condition that is not bool is refused", `"x"`, "condition has type string, want bool"},
		{"a condition nested deeper than the parser allows is refused", strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100), "condition does not compile"},
	}
	env := testEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(env, tt.src, testCostLimit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAConditionOverItsBudgetFails(t *testing.T) {
	prg, err := Compile(testEnv(t), `items.all(a, items.all(b, a + b != "zzz"))`, testCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]string, 200) // 40,000 iterations: over testCostLimit
	for i := range items {
		items[i] = "x"
	}
	if _, _, err := prg.Eval(map[string]any{"items": items}); err == nil {
		t.Fatal("Eval over the cost limit succeeded, want an error")
	}
	if out, _, err := prg.Eval(map[string]any{"items": items[:10]}); err != nil || out.Value() != true {
		t.Fatalf("Eval within the budget = %v, %v; want true", out, err)
	}
}

func TestACancelledEvaluationStopsInsideALoop(t *testing.T) {
	prg, err := Compile(testEnv(t), `items.all(a, a != "zzz")`, testCostLimit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	items := make([]string, InterruptCheckFrequency*4)
	if _, _, err := prg.ContextEval(ctx, map[string]any{"items": items}); err == nil {
		t.Fatal("ContextEval with a cancelled context succeeded, want it interrupted")
	}
}

// testCostLimit is the authorization policy's budget, the smaller of the two.
const testCostLimit = 10_000
