package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The server's own histograms, scraped before and after a run, say where an
// answer's time went inside the server: the whole request, issuance, each
// signature and each store statement. The report lists the mean of each over the
// run (delta of sum / delta of count) and how many calls one request made.

// breakdownFamilies are the histograms the report breaks a run down by.
var breakdownFamilies = []string{
	"ca_enroll_duration_seconds",
	"ca_issuance_duration_seconds",
	"ca_hsm_sign_duration_seconds",
	"ca_store_call_duration_seconds",
}

// histSnapshot is the sum and count of each histogram series, keyed by
// family and labels.
type histSnapshot map[string][2]float64

func scrapeHistograms(c *http.Client, url string) (histSnapshot, error) {
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	snap := histSnapshot{}
	for _, name := range breakdownFamilies {
		f := fams[name]
		if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			snap[seriesKey(name, m.GetLabel())] = [2]float64{h.GetSampleSum(), float64(h.GetSampleCount())}
		}
	}
	return snap, nil
}

// seriesKey is name{k=v,...} without the labels that only split by outcome
// detail the report does not need.
func seriesKey(name string, labels []*dto.LabelPair) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// breakdownRow is one histogram series over one run.
type breakdownRow struct {
	Series     string  `json:"series"`
	Calls      float64 `json:"calls"`
	PerRequest float64 `json:"calls_per_request"`
	MeanMs     float64 `json:"mean_ms"`
}

// breakdown is after - before for every series that moved, in key order.
func breakdown(before, after histSnapshot, requests int) []breakdownRow {
	var rows []breakdownRow
	for k, a := range after {
		b := before[k]
		calls := a[1] - b[1]
		if calls <= 0 {
			continue
		}
		row := breakdownRow{Series: k, Calls: calls, MeanMs: (a[0] - b[0]) / calls * 1000}
		if requests > 0 {
			row.PerRequest = calls / float64(requests)
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(x, y breakdownRow) int { return strings.Compare(x.Series, y.Series) })
	return rows
}
