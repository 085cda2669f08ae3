package celexpr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

// Bounds on every condition. Conditions run on outside-influenced values
// (token claims, request paths and headers), so each is limited in size when
// it is compiled and in cost when it runs.
const (
	// MaxBytes bounds the source length of one condition.
	MaxBytes = 4096
	// InterruptCheckFrequency is how many comprehension iterations run
	// between checks of the evaluation context (ContextEval), so a deadline
	// or cancellation stops a long loop.
	InterruptCheckFrequency = 64
	// maxRecursion bounds the parser's nesting depth.
	maxRecursion = 64
)

// NewEnv returns a CEL environment with the caller's variables and functions
// (opts) plus what every condition gets: the string extensions and the
// parser's depth and size limits.
func NewEnv(opts ...cel.EnvOption) (*cel.Env, error) {
	return cel.NewEnv(append(opts,
		ext.Strings(),
		cel.ParserRecursionLimit(maxRecursion),
		cel.ParserExpressionSizeLimit(MaxBytes),
	)...)
}

// Compile parses and type-checks src in env and returns a program bounded by
// costLimit (the runtime cost budget of one evaluation, in CEL cost units:
// roughly one per operation and per element traversed; an evaluation that
// exceeds it fails) and InterruptCheckFrequency. Each caller keeps its own
// budget: a condition on every request gets less than one per enrollment. It is an error when src is empty or
// blank, longer than MaxBytes, does not compile, or does not have type bool;
// the error says so starting with "condition".
func Compile(env *cel.Env, src string, costLimit uint64) (cel.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("condition is empty")
	}
	if len(src) > MaxBytes {
		return nil, fmt.Errorf("condition longer than %d bytes", MaxBytes)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("condition does not compile: %w", iss.Err())
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("condition has type %s, want bool", ast.OutputType())
	}
	prg, err := env.Program(ast,
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(InterruptCheckFrequency),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("condition: %w", err)
	}
	return prg, nil
}
