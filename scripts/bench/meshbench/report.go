package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one benchmark result: the median of its samples with min and
// max, and the goal it is compared against (informational, never pass/fail).
type Figure struct {
	Group   string    `json:"group"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	N       int       `json:"n"`
	Samples []float64 `json:"samples,omitempty"`
	Goal    string    `json:"goal,omitempty"`
	// Meets is set for figures with a numeric goal.
	Meets *bool  `json:"meets_goal,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Report is the JSON file the run writes.
type Report struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Machine  map[string]string `json:"machine"`
	Settings map[string]string `json:"settings"`
	Figures  []*Figure         `json:"figures"`
	Checks   map[string]string `json:"checks,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
	Errors   []string          `json:"errors,omitempty"`
}

func (r *Report) add(f *Figure) *Figure {
	r.Figures = append(r.Figures, f)
	return f
}

func (r *Report) find(group, name string) *Figure {
	for _, f := range r.Figures {
		if f.Group == group && f.Name == name {
			return f
		}
	}
	return nil
}

// fig builds a figure from samples.
func fig(group, name, unit string, samples []float64) *Figure {
	f := &Figure{Group: group, Name: name, Unit: unit, Samples: samples, N: len(samples)}
	if len(samples) == 0 {
		return f // N == 0 prints as "-"
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	f.Min, f.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		f.Median = s[len(s)/2]
	} else {
		f.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return f
}

// ratio builds a figure of a/b per paired sample, with the ratio of the
// medians as its headline (pairs are taken from interleaved runs).
func ratio(group, name string, a, b *Figure) *Figure {
	if a == nil || b == nil {
		return nil
	}
	var rs []float64
	for i := 0; i < len(a.Samples) && i < len(b.Samples); i++ {
		if b.Samples[i] != 0 {
			rs = append(rs, a.Samples[i]/b.Samples[i])
		}
	}
	f := fig(group, name, "ratio", rs)
	f.Note = "median is the ratio of the medians; min..max over paired runs"
	if b.Median != 0 && len(rs) > 0 {
		f.Median = a.Median / b.Median
	}
	return f
}

// goalAtLeast / goalBelow set a numeric goal on f.
func (f *Figure) goalAtLeast(v float64, text string) *Figure {
	if f == nil {
		return nil
	}
	f.Goal = text
	if f.N > 0 {
		ok := f.Median >= v
		f.Meets = &ok
	}
	return f
}

func (f *Figure) goalBelow(v float64, text string) *Figure {
	if f == nil {
		return nil
	}
	f.Goal = text
	if f.N > 0 {
		ok := f.Median < v
		f.Meets = &ok
	}
	return f
}

func (f *Figure) num(v float64) string {
	if f.N == 0 {
		return "-"
	}
	return num(v)
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// Print writes the human table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	group := ""
	fmt.Fprintln(tw, "FIGURE\tMEDIAN\tMIN\tMAX\tUNIT\tN\tGOAL")
	for _, f := range r.Figures {
		if f.Group != group {
			group = f.Group
			fmt.Fprintf(tw, "[%s]\t\t\t\t\t\t\n", group)
		}
		goal := f.Goal
		if f.Meets != nil {
			if *f.Meets {
				goal += "  (met)"
			} else {
				goal += "  (NOT met)"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.Name, f.num(f.Median), f.num(f.Min), f.num(f.Max), f.Unit, f.N, goal)
	}
	tw.Flush()
	if len(r.Checks) > 0 {
		fmt.Fprintln(w, "\nchecks:")
		keys := make([]string, 0, len(r.Checks))
		for k := range r.Checks {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, r.Checks[k])
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
}

// PrintMarkdown writes the table as Markdown (for docs/performance.md).
func (r *Report) PrintMarkdown(w io.Writer) {
	fmt.Fprintln(w, "| group | figure | median | min | max | unit | n | goal |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---|---:|---|")
	for _, f := range r.Figures {
		goal := f.Goal
		if f.Meets != nil {
			if *f.Meets {
				goal += " (met)"
			} else {
				goal += " (**not met**)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %s |\n", f.Group, strings.ReplaceAll(f.Name, "|", "/"), f.num(f.Median), f.num(f.Min), f.num(f.Max), f.Unit, f.N, goal)
	}
}

func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
