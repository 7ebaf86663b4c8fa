package schedule

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// genExpr returns a random five-field expression in the syntax Parse accepts. dense allows
// minute fields that fire every minute or so; the oracle tests keep it rare to bound how many
// Next calls they make. Values are biased towards the hours DST changes happen in and towards
// the days that do not exist in every month.
func genExpr(r *rand.Rand, dense bool) string {
	return strings.Join([]string{
		genMinute(r, dense),
		genHour(r),
		genDOM(r),
		genMonth(r),
		genDOW(r),
	}, " ")
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func genMinute(r *rand.Rand, dense bool) string {
	v := func() int {
		if r.IntN(2) == 0 {
			return pick(r, 0, 15, 30, 45, 59)
		}
		return r.IntN(60)
	}
	switch n := r.IntN(20); {
	case n == 0 && dense:
		return "*"
	case n <= 1 && dense:
		return fmt.Sprintf("*/%d", pick(r, 2, 3, 7))
	case n <= 3:
		return fmt.Sprintf("*/%d", pick(r, 10, 15, 20, 30, 13, 45, 60))
	case n <= 10:
		return fmt.Sprint(v())
	case n <= 13:
		return fmt.Sprintf("%d,%d", v(), v())
	case n <= 15:
		a := r.IntN(59)
		return fmt.Sprintf("%d-%d/%d", a, a+r.IntN(60-a), pick(r, 7, 10, 15, 20, 29))
	case n <= 17:
		return fmt.Sprintf("%d/%d", r.IntN(60), pick(r, 10, 15, 20, 30, 40))
	default:
		a := r.IntN(58)
		return fmt.Sprintf("%d-%d", a, a+r.IntN(3))
	}
}

func genHour(r *rand.Rand) string {
	v := func() int {
		if r.IntN(3) > 0 {
			return pick(r, 0, 1, 2, 3, 22, 23)
		}
		return r.IntN(24)
	}
	switch n := r.IntN(12); {
	case n <= 2:
		return "*"
	case n == 3:
		return fmt.Sprintf("*/%d", pick(r, 2, 3, 5, 7, 12))
	case n <= 7:
		return fmt.Sprint(v())
	case n == 8:
		return fmt.Sprintf("%d,%d", v(), v())
	case n == 9:
		a := r.IntN(23)
		return fmt.Sprintf("%d-%d", a, a+r.IntN(24-a))
	case n == 10:
		a := r.IntN(23)
		return fmt.Sprintf("%d-%d/%d", a, a+r.IntN(24-a), pick(r, 2, 3, 5))
	default:
		return fmt.Sprintf("%d/%d", r.IntN(24), pick(r, 2, 3, 4, 6))
	}
}

func genDOM(r *rand.Rand) string {
	v := func() int {
		if r.IntN(2) == 0 {
			return pick(r, 1, 28, 29, 30, 31)
		}
		return 1 + r.IntN(31)
	}
	switch n := r.IntN(10); {
	case n <= 4:
		return "*"
	case n == 5:
		return fmt.Sprint(v())
	case n == 6:
		return fmt.Sprintf("%d,%d", v(), v())
	case n == 7:
		a := 1 + r.IntN(30)
		return fmt.Sprintf("%d-%d", a, a+r.IntN(32-a))
	case n == 8:
		return fmt.Sprintf("*/%d", pick(r, 2, 3, 7, 10, 15))
	default:
		return fmt.Sprintf("%d/%d", 1+r.IntN(31), pick(r, 2, 5, 10))
	}
}

var monthNames = []string{"", "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
var dowNames = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}

func genMonth(r *rand.Rand) string {
	v := func() string {
		m := 1 + r.IntN(12)
		if r.IntN(4) == 0 {
			return pick(r, monthNames[m], strings.ToLower(monthNames[m]))
		}
		return fmt.Sprint(m)
	}
	switch n := r.IntN(10); {
	case n <= 5:
		return "*"
	case n == 6:
		return v()
	case n == 7:
		return v() + "," + v()
	case n == 8:
		a := 1 + r.IntN(11)
		return fmt.Sprintf("%d-%d", a, a+r.IntN(13-a))
	default:
		return fmt.Sprintf("*/%d", pick(r, 2, 3, 4, 6))
	}
}

func genDOW(r *rand.Rand) string {
	v := func() string {
		d := r.IntN(8)
		if d < 7 && r.IntN(4) == 0 {
			return dowNames[d]
		}
		return fmt.Sprint(d)
	}
	switch n := r.IntN(12); {
	case n <= 5:
		return "*"
	case n == 6:
		return v()
	case n == 7:
		return v() + "," + v()
	case n == 8:
		a := r.IntN(7)
		return fmt.Sprintf("%d-%d", a, a+r.IntN(8-a))
	case n == 9:
		return pick(r, "MON-FRI", "SAT,SUN", "*/2", "*/3")
	case n == 10:
		return fmt.Sprintf("%d/%d", r.IntN(8), pick(r, 2, 3))
	default:
		a := r.IntN(6)
		return fmt.Sprintf("%d-7/%d", a, pick(r, 2, 3))
	}
}
