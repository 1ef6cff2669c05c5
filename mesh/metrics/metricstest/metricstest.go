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

// Exposition is a parsed exposition, by family name.
type Exposition map[string]*dto.MetricFamily

// Parse parses text with the Prometheus text parser and fails the test if
// the parser refuses it.
func Parse(t testing.TB, text []byte) Exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus text parser refused the exposition: %v\n%s", err, text)
	}
	return Exposition(fams)
}

// Value is the value of the one series of family fam whose labels include
// every pair in labels. ok is false when the family or the series is
// missing, or more than one series matches.
func (f Exposition) Value(fam string, labels map[string]string) (v float64, ok bool) {
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
func (f Exposition) MustValue(t testing.TB, fam string, labels map[string]string) float64 {
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

// Families is meshnode's exported contract: family name → type. A family
// dropped or renamed breaks dashboards, so it breaks the tests first.
var Families = map[string]dto.MetricType{
	"meshnode_build_info":                             dto.MetricType_GAUGE,
	"meshnode_members":                                dto.MetricType_GAUGE,
	"meshnode_peers":                                  dto.MetricType_GAUGE,
	"meshnode_wireguard_rx_bytes_total":               dto.MetricType_COUNTER,
	"meshnode_wireguard_tx_bytes_total":               dto.MetricType_COUNTER,
	"meshnode_wireguard_peers_without_handshake":      dto.MetricType_GAUGE,
	"meshnode_wireguard_oldest_handshake_age_seconds": dto.MetricType_GAUGE,
	"meshnode_wireguard_cutoff_addresses":             dto.MetricType_GAUGE,
	"meshnode_wireguard_cutoff_resets_total":          dto.MetricType_COUNTER,
	"meshnode_wireguard_dropped":                      dto.MetricType_GAUGE,
	"meshnode_gossip_admission_refusals_total":        dto.MetricType_COUNTER,
	"meshnode_gossip_revocations":                     dto.MetricType_GAUGE,
	"meshnode_gossip_push_pulls_total":                dto.MetricType_COUNTER,
	"meshnode_gossip_probes_total":                    dto.MetricType_COUNTER,
	"meshnode_gossip_members_changed_age_seconds":     dto.MetricType_GAUGE,
	"meshnode_gossip_deaths_refuted":                  dto.MetricType_GAUGE,
	"meshnode_nats_up":                                dto.MetricType_GAUGE,
	"meshnode_nats_routes_up":                         dto.MetricType_GAUGE,
	"meshnode_nats_routes_expected":                   dto.MetricType_GAUGE,
	"meshnode_nats_client_connections":                dto.MetricType_GAUGE,
	"meshnode_nats_in_msgs_total":                     dto.MetricType_COUNTER,
	"meshnode_nats_out_msgs_total":                    dto.MetricType_COUNTER,
	"meshnode_nats_in_bytes_total":                    dto.MetricType_COUNTER,
	"meshnode_nats_out_bytes_total":                   dto.MetricType_COUNTER,
	"meshnode_nats_slow_consumers_total":              dto.MetricType_COUNTER,
	"meshnode_jetstream_enabled":                      dto.MetricType_GAUGE,
	"meshnode_jetstream_meta_leader_present":          dto.MetricType_GAUGE,
	"meshnode_jetstream_streams":                      dto.MetricType_GAUGE,
	"meshnode_jetstream_consumers":                    dto.MetricType_GAUGE,
	"meshnode_jetstream_storage_bytes":                dto.MetricType_GAUGE,
	"meshnode_jetstream_storage_limit_bytes":          dto.MetricType_GAUGE,
	"meshnode_enroll_joins_admitted_total":            dto.MetricType_COUNTER,
	"meshnode_enroll_joins_refused_total":             dto.MetricType_COUNTER,
	"meshnode_enroll_rate_limited_total":              dto.MetricType_COUNTER,
	"meshnode_ticket_expiry_timestamp_seconds":        dto.MetricType_GAUGE,
	"meshnode_cert_expiry_timestamp_seconds":          dto.MetricType_GAUGE,
	"meshnode_ca_expiry_timestamp_seconds":            dto.MetricType_GAUGE,
	"meshnode_last_renewal_timestamp_seconds":         dto.MetricType_GAUGE,
}
