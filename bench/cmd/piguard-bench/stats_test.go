package main

import (
	"math"
	"testing"
)

func TestGeoMeanCI(t *testing.T) {
	m, lo, hi := geoMeanCI([]float64{1.1, 1.1, 1.1})
	if math.Abs(m-1.1) > 1e-12 || math.Abs(lo-1.1) > 1e-12 || math.Abs(hi-1.1) > 1e-12 {
		t.Fatalf("constant ratios: %v %v %v", m, lo, hi)
	}
	m, lo, hi = geoMeanCI([]float64{0.5, 2})
	if math.Abs(m-1) > 1e-12 || !(lo < 1 && hi > 1) || math.Abs(lo*hi-1) > 1e-9 {
		t.Fatalf("symmetric ratios: %v %v %v", m, lo, hi)
	}
	if got := tQuantile975(19); got != 2.093 {
		t.Fatalf("t(19) = %v", got)
	}
}

func TestMedianAndIntList(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Fatalf("odd median %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Fatalf("even median %v", got)
	}
	got, err := intList(" 1, 16,64 ")
	if err != nil || len(got) != 3 || got[2] != 64 {
		t.Fatalf("intList: %v %v", got, err)
	}
	if _, err := intList("1,x"); err == nil {
		t.Fatal("intList accepted x")
	}
}
