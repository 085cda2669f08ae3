package postgres_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

func BenchmarkRecordIssuance(b *testing.B) { storetest.BenchRecordIssuance(b, testkit.Postgres(b)) }

// BenchmarkRecordIssuanceParallel: many concurrent callers (group commit).
func BenchmarkRecordIssuanceParallel(b *testing.B) {
	storetest.BenchRecordIssuanceParallel(b, testkit.Postgres(b))
}

func BenchmarkGetCertificate(b *testing.B) { storetest.BenchGetCertificate(b, testkit.Postgres(b)) }

func BenchmarkListCertificates(b *testing.B) { storetest.BenchListCertificates(b, testkit.Postgres(b)) }

func BenchmarkDenials(b *testing.B) { storetest.BenchDenials(b, testkit.Postgres(b)) }

func BenchmarkRevokeMany(b *testing.B) { storetest.BenchRevokeMany(b, testkit.Postgres(b)) }

func BenchmarkGetOCSPResponse(b *testing.B) { storetest.BenchGetOCSPResponse(b, testkit.Postgres(b)) }

func BenchmarkPutOCSPResponses(b *testing.B) { storetest.BenchPutOCSPResponses(b, testkit.Postgres(b)) }

// BenchmarkEnrollmentWrites: the store's work per enrollment, with the
// postgres processes' CPU per enrollment (pg-cpu-ns/op).
func BenchmarkEnrollmentWrites(b *testing.B) {
	storetest.BenchEnrollmentWrites(b, testkit.Postgres(b), true)
}
