package failbench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Trial is the outcome of one kill.
type Trial struct {
	N      int
	Victim string
	// Unavailable is the time from the kill to the first acknowledged
	// write sent after it; when Recovered is false no such write was
	// acknowledged within Config.MaxUnavailable and Unavailable is that
	// limit (a lower bound).
	Unavailable time.Duration
	Recovered   bool
	// AckGap is the longest interval between consecutive acknowledgements
	// in the trial.
	AckGap time.Duration
	// Sent, Acked and Failed count the writes; Skipped the ticks at which
	// every connection was still busy.
	Sent, Acked, Failed, Skipped int
	// Lost counts the acknowledged writes the new primary did not return;
	// LostKeys names the first few.
	Lost     int
	LostKeys []string
	// Reported is how many writes the returning node said it set aside in
	// this trial, or -1 when the system does not say (ErrNotExposed).
	Reported int64
	// FirstErr is the first failure a client saw after the kill.
	FirstErr string
}

// Result is one configuration's trials.
type Result struct {
	Name   string
	Trials []Trial
}

// Summary condenses a Result into one table row.
type Summary struct {
	Name                        string
	Trials                      int
	UnavailP50, UnavailP99, Max time.Duration
	GapP50, GapMax              time.Duration
	// Unrecovered counts trials with no acknowledged write within
	// Config.MaxUnavailable of the kill.
	Unrecovered int
	// LostSum and LostMax: acknowledged writes lost, in all trials and in
	// the worst one.
	LostSum, LostMax int
	// Reported is the sum of the counts the returning nodes reported, or
	// -1 if the count was not available in a trial that recovered (one
	// that did not never got as far as asking).
	Reported int64
	Acked    int
	Failed   int
}

// Summary condenses r. Percentiles are nearest-rank, so with 20 trials
// p99 is the slowest trial.
func (r Result) Summary() Summary {
	s := Summary{Name: r.Name, Trials: len(r.Trials)}
	var un, gaps []time.Duration
	for _, t := range r.Trials {
		un = append(un, t.Unavailable)
		gaps = append(gaps, t.AckGap)
		if !t.Recovered {
			s.Unrecovered++
		}
		s.LostSum += t.Lost
		s.LostMax = max(s.LostMax, t.Lost)
		switch {
		case !t.Recovered:
		case t.Reported < 0 || s.Reported < 0:
			s.Reported = -1
		default:
			s.Reported += t.Reported
		}
		s.Acked += t.Acked
		s.Failed += t.Failed
	}
	if len(r.Trials) == 0 {
		s.Reported = -1
	}
	s.UnavailP50, s.UnavailP99, s.Max = Percentile(un, 0.5), Percentile(un, 0.99), Percentile(un, 1)
	s.GapP50, s.GapMax = Percentile(gaps, 0.5), Percentile(gaps, 1)
	return s
}

// Percentile is the nearest-rank p-quantile (0 < p <= 1) of ds, or 0 if
// ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Table renders summaries as a Markdown table.
func Table(ss []Summary) string {
	var b strings.Builder
	b.WriteString("| configuration | trials | unavailable p50 | p99 | max | longest ack gap p50 / max | no recovery | lost acked (sum / worst trial) | reported lost by returning node | writes acked | writes failed |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range ss {
		rep := "not exposed"
		if s.Reported >= 0 {
			rep = fmt.Sprint(s.Reported)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s / %s | %d | %d / %d | %s | %d | %d |\n",
			s.Name, s.Trials, ms(s.UnavailP50), ms(s.UnavailP99), ms(s.Max), ms(s.GapP50), ms(s.GapMax),
			s.Unrecovered, s.LostSum, s.LostMax, rep, s.Acked, s.Failed)
	}
	return b.String()
}

// TrialTable renders one configuration's trials as a Markdown table, for
// the record behind a summary row.
func TrialTable(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n| trial | killed | unavailable | longest ack gap | acked | failed | skipped | lost acked | reported | first error after the kill |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n", r.Name)
	for _, t := range r.Trials {
		un := ms(t.Unavailable)
		if !t.Recovered {
			un = "> " + un
		}
		rep := "-"
		if t.Reported >= 0 {
			rep = fmt.Sprint(t.Reported)
		}
		lost := fmt.Sprint(t.Lost)
		if len(t.LostKeys) > 0 {
			lost += " (" + strings.Join(t.LostKeys, " ") + ")"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d | %d | %d | %s | %s | %s |\n", t.N, t.Victim, un, ms(t.AckGap),
			t.Acked, t.Failed, t.Skipped, lost, rep, strings.ReplaceAll(oneLine(t.FirstErr, 100), "|", "/"))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// oneLine shortens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
