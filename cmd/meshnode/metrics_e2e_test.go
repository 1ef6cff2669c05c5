package main

import (
	"testing"

	"github.com/meshnode/meshnode/mesh/metrics/metricstest"
	"github.com/meshnode/meshnode/scripts/meshlab"
)

// scrape reads n's metrics with `meshnode metrics` (the local API's GET
// /metrics) and parses them with the Prometheus text parser; every family
// of the contract must be there.
func scrape(t *testing.T, n *meshlab.Node) metricstest.Exposition {
	t.Helper()
	out, err := n.Meshnode("metrics", "--state", n.State)
	if err != nil {
		t.Fatal(err)
	}
	e := metricstest.Parse(t, []byte(out))
	for fam := range metricstest.Families {
		if _, ok := e[fam]; !ok {
			t.Fatalf("%s: metric family %s missing", n.Name, fam)
		}
	}
	return e
}

// wantMetric fails unless n's series fam{labels} has the value want.
func wantMetric(t *testing.T, n *meshlab.Node, e metricstest.Exposition, fam string, labels map[string]string, want float64) {
	t.Helper()
	if got := e.MustValue(t, fam, labels); got != want {
		t.Fatalf("%s: %s%v = %v, want %v", n.Name, fam, labels, got, want)
	}
}
