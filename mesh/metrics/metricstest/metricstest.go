// Package metricstest reads Prometheus text in tests with the Prometheus
// project's own parser, so what meshnode exports is checked by the code a
// real scraper runs. Test-only: nothing in the product imports it.
package metricstest

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is a parsed exposition, by family name.
type Families map[string]*dto.MetricFamily

// Parse parses text with the Prometheus text parser and fails the test if
// the parser refuses it.
func Parse(t testing.TB, text []byte) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus text parser refused the exposition: %v\n%s", err, text)
	}
	return Families(fams)
}

// Value is the value of the one series of family fam whose labels include
// every pair in labels. ok is false when the family or the series is
// missing, or more than one series matches.
func (f Families) Value(fam string, labels map[string]string) (v float64, ok bool) {
	mf, found := f[fam]
	if !found {
		return 0, false
	}
	n := 0
	for _, m := range mf.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		n++
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		default:
			v = m.GetUntyped().GetValue()
		}
	}
	return v, n == 1
}

// MustValue is Value that fails the test when the series is not there.
func (f Families) MustValue(t testing.TB, fam string, labels map[string]string) float64 {
	t.Helper()
	v, ok := f.Value(fam, labels)
	if !ok {
		t.Fatalf("metric %s%v: not exactly one series", fam, labels)
	}
	return v
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
