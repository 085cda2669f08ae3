package server

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Overload shedding (issue 20). Past what the machine signs and records per
// second, requests that queue only make every answer later: at 256 clients
// each would wait behind the 255 others, well past a client's patience, and
// the work done for the ones that gave up is wasted. So at most
// MaxInFlightEnrollments enrollments and renewals are answered at once; one
// more is refused at once, before its token is checked (the token is not
// spent, so the client retries with it), with 503 overloaded and
// Retry-After. Accepted requests keep a short tail; nothing is half-done,
// since nothing of a shed request was.
//
// The body (size-bounded by limitBody, time-bounded by the server's
// ReadTimeout) is read before a slot is taken: a slot stands for CPU work,
// and a client that sends its body slowly, or never, must not hold one, or
// a few anonymous connections trickling bodies would shed every real
// enrollment.

// DefaultMaxInFlightEnrollments is Deps.MaxInFlightEnrollments when zero:
// on a 2-core machine about 40 ms of work in flight at 1,500 enrollments/s.
const DefaultMaxInFlightEnrollments = 64

// retryAfterOverloaded is the Retry-After, in seconds, of 503 overloaded:
// the clients add jitter (`ca enroll`, `ca renew`), so they come back
// spread over the next seconds.
const retryAfterOverloaded = 1

// admission is a counting semaphore that never waits.
type admission struct {
	slots    chan struct{}
	shed     *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newAdmission(n int) *admission {
	if n <= 0 {
		n = DefaultMaxInFlightEnrollments
	}
	return &admission{
		slots: make(chan struct{}, n),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_enroll_shed_total",
			Help: "Enrollments and renewals refused with 503 overloaded because " + strconv.Itoa(n) + " were already in flight, by action.",
		}, []string{"action"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ca_enroll_in_flight",
			Help: "Enrollments and renewals being answered.",
		}),
	}
}

// errOverloaded is the answer to a shed request.
var errOverloaded = &Error{Kind: KindUnavailable, Reason: ReasonOverloaded,
	Detail: "the CA is answering as many enrollments as it takes at once; retry after the Retry-After seconds"}

// admit reads the request's body, then runs h if a slot is free, else
// answers 503 overloaded at once.
func (e *enrollment) admit(action string, h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Body != nil && r.Body != http.NoBody {
			body, err := readAllSized(r.Body, r.ContentLength)
			// h reads the same bytes, then the same error (a body over
			// the limit, a connection cut), and answers as it would have.
			rb := &readBody{data: body, err: err}
			rb.Reset(body)
			r.Body = rb
		}
		select {
		case e.load.slots <- struct{}{}:
		default:
			e.load.shed.WithLabelValues(action).Inc()
			return errOverloaded
		}
		e.load.inFlight.Inc()
		defer func() {
			e.load.inFlight.Dec()
			<-e.load.slots
		}()
		return h(w, r)
	}
}

// readBody replays a body read ahead: its bytes, then the error that ended
// the read (io.EOF if none).
type readBody struct {
	bytes.Reader
	data []byte
	err  error
}

func (b *readBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF && b.err != nil {
		err = b.err
	}
	return n, err
}

func (*readBody) Close() error { return nil }

// readAllSized is io.ReadAll with a first buffer of the declared length (which
// limitBody has bounded), so that a body of known length is read into one
// allocation instead of a growing series.
func readAllSized(r io.Reader, contentLength int64) ([]byte, error) {
	n := 512
	if contentLength > 0 && contentLength < 1<<30 {
		n = int(contentLength) + 1 // room to read the EOF without growing
	}
	b := make([]byte, 0, n)
	for {
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// requestBody is io.ReadAll(r.Body), without the copy when admit has read
// the body ahead and nothing has read from it since: the bytes admit read
// and the error that ended its read.
func requestBody(r *http.Request) ([]byte, error) {
	if rb, ok := r.Body.(*readBody); ok && rb.Len() == len(rb.data) {
		rb.Reset(nil) // read to its end, as io.ReadAll leaves it
		return rb.data, rb.err
	}
	return io.ReadAll(r.Body)
}
