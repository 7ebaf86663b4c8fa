package schedule

import (
	"fmt"
	"strconv"
	"strings"
)

type fieldSpec struct {
	name     string
	min, max int
	names    map[string]int
}

var fieldSpecs = [5]fieldSpec{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
	}},
	// 7 is Sunday as well as 0; it is folded onto 0 after parsing.
	{name: "day-of-week", min: 0, max: 7, names: map[string]int{
		"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6,
	}},
}

// splitFields returns the five cron fields of expr, upper-cased, with a leading "0" seconds
// field dropped and @-macros expanded.
func splitFields(expr string) ([]string, error) {
	trimmed := strings.TrimSpace(expr)
	if trimmed == "" {
		return nil, fmt.Errorf("%w: empty expression", ErrInvalidSchedule)
	}
	if strings.HasPrefix(trimmed, "@") {
		m, ok := macros[strings.ToLower(trimmed)]
		if !ok {
			return nil, fmt.Errorf("%w: unknown macro %q", ErrInvalidSchedule, trimmed)
		}
		trimmed = m
	}
	fields := strings.Fields(strings.ToUpper(trimmed))
	switch len(fields) {
	case 5:
	case 6:
		if fields[0] != "0" {
			return nil, fmt.Errorf("%w: seconds field must be exactly \"0\" (nothing runs more often than once a minute), got %q", ErrInvalidSchedule, fields[0])
		}
		fields = fields[1:]
	default:
		return nil, fmt.Errorf("%w: want 5 fields (minute hour day-of-month month day-of-week), got %d", ErrInvalidSchedule, len(fields))
	}
	return fields, nil
}

func (s *Schedule) compile(fields []string) error {
	var bits [5]uint64
	for i, f := range fields {
		b, err := parseField(f, fieldSpecs[i])
		if err != nil {
			return err
		}
		bits[i] = b
	}
	dows := bits[4]
	if dows&(1<<7) != 0 {
		dows = dows&^(1<<7) | 1
	}
	s.minutes = bits[0]
	s.hours = uint32(bits[1])
	s.doms = uint32(bits[2])
	s.months = uint16(bits[3])
	s.dows = uint8(dows)
	s.elapsed = strings.HasPrefix(fields[1], "*")
	s.dayAnd = strings.HasPrefix(fields[2], "*") || strings.HasPrefix(fields[4], "*")
	for first := range 7 {
		var m uint32
		for d := 1; d <= 31; d++ {
			if s.dows&(1<<((first+d-1)%7)) != 0 {
				m |= 1 << d
			}
		}
		s.dowDays[first] = m
	}
	return nil
}

// parseField turns one field into a bitset: a comma list of "*", "N", "N-M", each optionally
// followed by "/STEP"; "N/STEP" means N-max/STEP.
func parseField(text string, f fieldSpec) (uint64, error) {
	items := strings.Split(text, ",")
	var bits uint64
	for _, item := range items {
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := parseNumber(stepText, 3)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("%w: %s field %q: step %q must be a positive number", ErrInvalidSchedule, f.name, text, stepText)
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*":
			if len(items) > 1 {
				// Vixie cron and gronx disagree on whether "*,5" restricts its field; refuse it.
				return 0, fmt.Errorf("%w: %s field %q: '*' cannot be part of a list", ErrInvalidSchedule, f.name, text)
			}
			lo, hi = f.min, f.max
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = parseValue(a, f); err != nil {
				return 0, fmt.Errorf("%w: %s field %q: %w", ErrInvalidSchedule, f.name, text, err)
			}
			if hi, err = parseValue(b, f); err != nil {
				return 0, fmt.Errorf("%w: %s field %q: %w", ErrInvalidSchedule, f.name, text, err)
			}
			if lo > hi {
				return 0, fmt.Errorf("%w: %s field %q: range %q runs backwards", ErrInvalidSchedule, f.name, text, rng)
			}
		default:
			v, err := parseValue(rng, f)
			if err != nil {
				return 0, fmt.Errorf("%w: %s field %q: %w", ErrInvalidSchedule, f.name, text, err)
			}
			lo, hi = v, v
			if hasStep {
				hi = f.max
				if f.name == "day-of-week" {
					// gronx reads "N/STEP" in this field as N..Saturday, with a leading 7 meaning
					// Sunday; follow it rather than reaching a second Sunday at 7.
					hi = 6
					if lo == 7 {
						lo = 0
					}
				}
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func parseValue(text string, f fieldSpec) (int, error) {
	if v, ok := f.names[text]; ok {
		return v, nil
	}
	v, err := parseNumber(text, 2)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", text)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// parseNumber accepts 1 to maxDigits ASCII digits; short numbers keep gronx from reading a
// field as a year.
func parseNumber(text string, maxDigits int) (int, error) {
	if text == "" || len(text) > maxDigits {
		return 0, fmt.Errorf("bad number %q", text)
	}
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", text)
		}
	}
	return strconv.Atoi(text)
}
