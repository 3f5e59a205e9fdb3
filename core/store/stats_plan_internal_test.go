package store

import (
	"slices"
	"testing"
	"time"
)

func TestWeekStart(t *testing.T) {
	for _, c := range []struct{ t, want string }{
		{"2026-12-07T00:00:00Z", "2026-12-07T00:00:00Z"}, // a Monday
		{"2026-12-06T23:59:59Z", "2026-11-30T00:00:00Z"}, // a Sunday
		{"2026-12-09T13:00:00Z", "2026-12-07T00:00:00Z"},
		{"2000-01-03T00:00:00Z", "2000-01-03T00:00:00Z"}, // the origin
		{"1999-12-29T08:00:00Z", "1999-12-27T00:00:00Z"}, // before the origin
		{"1999-12-27T00:00:00Z", "1999-12-27T00:00:00Z"},
	} {
		at, _ := time.Parse(time.RFC3339, c.t)
		want, _ := time.Parse(time.RFC3339, c.want)
		if got := weekStart(at); !got.Equal(want) || got.Weekday() != time.Monday {
			t.Errorf("weekStart(%s) = %s, want %s", c.t, got, c.want)
		}
	}
}

// planStats reads whole current weeks and only the days and hours around them; without weeks,
// or with a week not current, it reads the days.
func TestPlanStatsWeeks(t *testing.T) {
	w0 := time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC) // a Monday
	from := w0.Add(-statsDay + 5*time.Hour + 30*time.Minute)
	to := w0.Add(2*statsWeek + 3*time.Hour)
	closed := to.Add(statsDay)
	hours, days := map[time.Time]bool{}, map[time.Time]bool{}
	for h := w0.Add(-statsDay); h.Before(to); h = h.Add(time.Hour) {
		hours[h] = true
	}
	for d := w0.Add(-statsDay); d.Before(to); d = d.Add(statsDay) {
		days[d] = true
	}
	var edgeHours []time.Time
	for h := w0.Add(-statsDay + 6*time.Hour); h.Before(w0); h = h.Add(time.Hour) {
		edgeHours = append(edgeHours, h)
	}
	for h := w0.Add(2 * statsWeek); h.Before(to); h = h.Add(time.Hour) {
		edgeHours = append(edgeHours, h)
	}
	raw := [][2]time.Time{{from, w0.Add(-statsDay + 6*time.Hour)}}

	p := planStats(from, to, hours, days, map[time.Time]bool{w0: true, w0.Add(statsWeek): true}, closed)
	if !slices.EqualFunc(p.weeks, []time.Time{w0, w0.Add(statsWeek)}, time.Time.Equal) || len(p.days) != 0 ||
		!slices.EqualFunc(p.hours, edgeHours, time.Time.Equal) || !slices.Equal(p.raw, raw) || p.stale {
		t.Fatalf("with both weeks current: %+v", p)
	}

	// The second week not summed (yet): its 7 days instead, and a refresh is due.
	p = planStats(from, to, hours, days, map[time.Time]bool{w0: true}, closed)
	var wantDays []time.Time
	for d := w0.Add(statsWeek); d.Before(w0.Add(2 * statsWeek)); d = d.Add(statsDay) {
		wantDays = append(wantDays, d)
	}
	if !slices.EqualFunc(p.weeks, []time.Time{w0}, time.Time.Equal) || !slices.EqualFunc(p.days, wantDays, time.Time.Equal) ||
		!slices.EqualFunc(p.hours, edgeHours, time.Time.Equal) || !p.stale {
		t.Fatalf("with the second week not current: %+v", p)
	}

	// Without weeks (the reads of migration 0007): 14 days.
	p = planStats(from, to, hours, days, nil, closed)
	if len(p.weeks) != 0 || len(p.days) != 14 || !slices.EqualFunc(p.hours, edgeHours, time.Time.Equal) || p.stale {
		t.Fatalf("without weeks: %+v", p)
	}

	// A range that starts a microsecond after a Monday holds one whole week less.
	p = planStats(w0.Add(time.Microsecond), to, hours, days, map[time.Time]bool{w0: true, w0.Add(statsWeek): true}, closed)
	if !slices.EqualFunc(p.weeks, []time.Time{w0.Add(statsWeek)}, time.Time.Equal) || len(p.days) != 6 {
		t.Fatalf("from inside the first week: %+v", p)
	}
}
