package main

import (
	"reflect"
	"testing"
)

func TestParseTuneVariants(t *testing.T) {
	got, err := parseTuneVariants(" GOGC=50 GOMEMLIMIT=64MiB ;; defaults;GOMAXPROCS=1 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []tuneVariant{
		{name: "GOGC=50 GOMEMLIMIT=64MiB", env: []string{"GOGC=50", "GOMEMLIMIT=64MiB"}},
		{name: "defaults"},
		{name: "GOMAXPROCS=1", env: []string{"GOMAXPROCS=1"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if def, err := parseTuneVariants(""); err != nil || len(def) != 4 || def[3].name != "defaults" {
		t.Fatalf("default variants = %+v, %v", def, err)
	}
	if _, err := parseTuneVariants("GOGC"); err == nil {
		t.Fatal("a variant without = was accepted")
	}
}
