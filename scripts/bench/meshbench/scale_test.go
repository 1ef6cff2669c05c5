package main

import (
	"slices"
	"testing"
)

func TestMetaGroupSize(t *testing.T) {
	for _, c := range []struct {
		js   string
		size int
		ok   bool
	}{
		{"ok, meta leader node3, 5 servers", 5, true},
		{"ok, meta leader node12, 20 servers", 20, true},
		{"ok, standalone (no other member yet)", 0, false},
		{"through the core (leaf)", 0, false},
		{"waiting for 2 of 3 members", 0, false},
		{"off", 0, false},
	} {
		size, ok := metaGroupSize(c.js)
		if size != c.size || ok != c.ok {
			t.Errorf("metaGroupSize(%q) = %d, %v; want %d, %v", c.js, size, ok, c.size, c.ok)
		}
	}
}

func TestCountOnPorts(t *testing.T) {
	out := `0      0      [fd12:3456:789a:1::1]:6222   [fd12:3456:789a:1::2]:41234
0      0      [fd12:3456:789a:1::1]:41000  [fd12:3456:789a:1::3]:6222
0      0      [fd12:3456:789a:1::1]:7422   [fd12:3456:789a:1::9]:50000
0      0      [fd12:3456:789a:1::1]:4222   [fd12:3456:789a:1::1]:36222
0      0      10.231.0.1:51821             10.231.0.2:7422x

`
	if got, want := countOnPorts(out, 6222, 7422), []int{2, 1}; !slices.Equal(got, want) {
		t.Errorf("countOnPorts = %v, want %v", got, want)
	}
}
