package defaults

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDesignTable pins the values DESIGN.md "Defaults" documents: changing
// one is a decision for the docs and for every deployed mesh (members must
// agree on the gossip and NATS ports), not a side effect.
func TestDesignTable(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"StateDir", StateDir, "/var/lib/meshnode"},
		{"Interface", Interface, "mesh0"},
		{"ListenPort", ListenPort, 51820},
		{"MTU", MTU, 1420},
		{"EnrollPort", EnrollPort, 51821},
		{"GossipPort", GossipPort, 7946},
		{"NATSClientPort", NATSClientPort, 4222},
		{"NATSRoutePort", NATSRoutePort, 6222},
		{"NATSLeafPort", NATSLeafPort, 7422},
		{"MaxCore", MaxCore, 5},
		{"BootstrapExpect", BootstrapExpect, 3},
		{"Keepalive", Keepalive, 25 * time.Second},
		{"CAValidity", CAValidity, 10 * 365 * 24 * time.Hour},
		{"NodeCertValidity", NodeCertValidity, 365 * 24 * time.Hour},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestImportsOnlyStandardLibrary keeps the package a leaf: every meshnode
// package imports it, so one import of meshnode here is a cycle waiting to
// happen and any other import is a dependency for all of them.
func TestImportsOnlyStandardLibrary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s: defaults may import only the standard library", f, p)
			}
		}
	}
}
