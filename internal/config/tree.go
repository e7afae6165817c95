package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// This file reads the generic values of a configuration tree: maps, lists
// and scalars in the forms YAML, TOML, JSON, environment variables and flags
// give them, reporting each refusal with its key path.

// object is a map of a tree with lowercase keys.
type object map[string]any

// get returns the value of key; a key set to null counts as absent.
func (o object) get(key string) (any, bool) {
	v, ok := o[key]
	return v, ok && v != nil
}

// asMap returns v as a map with string keys, if it is one.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

// object reads a map whose keys must be among known, lowercasing the keys
// as viper does. A null v is an empty map. ok is false when v is not a map.
func (d *decoder) object(path string, v any, known ...string) (o object, ok bool) {
	if v == nil {
		return object{}, true
	}
	m, ok := asMap(v)
	if !ok {
		d.fail(path, "want a map, got %s", describe(v))
		return nil, false
	}
	o = make(object, len(m))
	spelled := make(map[string]string, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		if other, dup := spelled[lk]; dup {
			d.fail(join(path, lk), "key given twice (%q and %q)", other, k)
			continue
		}
		spelled[lk] = k
		if !slices.Contains(known, lk) {
			if s := closest(lk, known); s != "" {
				d.fail(join(path, k), "unknown key (did you mean %q?)", s)
			} else {
				d.fail(join(path, k), "unknown key (want one of %s)", strings.Join(known, ", "))
			}
			continue
		}
		o[lk] = v
	}
	return o, true
}

// item is one element of a list with its key path.
type item struct {
	path string
	v    any
}

// list reads a list. A single value stands for a list of one, and a string
// is split at commas and white space ("syn, fin") as environment variables
// give lists. ok is false when v is a map.
func (d *decoder) list(path string, v any) (items []item, ok bool) {
	if v == nil {
		return nil, true
	}
	if s, isStr := v.(string); isStr {
		fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(fields) == 1 && fields[0] == s {
			return []item{{path, s}}, true
		}
		for i, f := range fields {
			items = append(items, item{index(path, i), f})
		}
		return items, true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			items = append(items, item{index(path, i), rv.Index(i).Interface()})
		}
		return items, true
	case reflect.Map:
		d.fail(path, "want a list or a single value, got a map")
		return nil, false
	}
	return []item{{path, v}}, true
}

func (d *decoder) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.fail(path, "want a string, got %s", describe(v))
	}
	return s, ok
}

// oneOf reads a string naming one of names, in any case, and returns its
// index; what names the kind of value in the error.
func (d *decoder) oneOf(path string, v any, what string, names ...string) (int, bool) {
	s, ok := d.str(path, v)
	if !ok {
		return 0, false
	}
	if i := slices.Index(names, lower(s)); i >= 0 {
		return i, true
	}
	d.fail(path, "unknown %s %q (want %s)", what, s, orList(names))
	return 0, false
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func (d *decoder) bool(path string, v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case string:
		switch lower(b) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	d.fail(path, "want true or false, got %s", describe(v))
	return false, false
}

// uint reads an integer in [lo, hi].
func (d *decoder) uint(path string, v any, lo, hi uint64) (uint64, bool) {
	neg, n, text, problem := integer(v)
	switch {
	case problem != "":
		d.fail(path, "%s", problem)
		return 0, false
	case (neg || n < lo) && lo == 0 && hi == math.MaxUint64:
		d.fail(path, "%s is negative", text)
		return 0, false
	case (neg || n < lo) && hi == math.MaxUint64:
		d.fail(path, "%s is less than %d", text, lo)
		return 0, false
	case neg || n < lo || n > hi:
		d.fail(path, "%s is out of range %d-%d", text, lo, hi)
		return 0, false
	}
	return n, true
}

// integer reads an integer of any numeric type, or a float or a string
// that holds one, as its sign and magnitude. text renders the input;
// problem is empty when v is an integer.
func integer(v any) (neg bool, mag uint64, text, problem string) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := rv.Int()
		if x < 0 {
			return true, uint64(-(x + 1)) + 1, strconv.FormatInt(x, 10), ""
		}
		return false, uint64(x), strconv.FormatInt(x, 10), ""
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return false, rv.Uint(), strconv.FormatUint(rv.Uint(), 10), ""
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		text = strconv.FormatFloat(f, 'g', -1, 64)
		switch {
		case f != math.Trunc(f): // also NaN and the infinities
			return false, 0, text, text + " is not an integer"
		case math.Abs(f) >= 1<<64:
			return false, 0, text, text + " is too large"
		}
		return f < 0, uint64(math.Abs(f)), text, ""
	case reflect.String:
		text = strings.TrimSpace(rv.String())
		digits, neg := strings.CutPrefix(text, "-")
		n, err := strconv.ParseUint(digits, 10, 64)
		switch {
		case err == nil:
			return neg, n, text, ""
		case errors.Is(err, strconv.ErrRange):
			return false, 0, text, text + " is too large"
		}
		return false, 0, text, fmt.Sprintf("%q is not an integer", rv.String())
	}
	return false, 0, "", "want an integer, got " + describe(v)
}

// float reads a finite number, which may be given as a string.
func (d *decoder) float(path string, v any) (float64, bool) {
	var f float64
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Float32, reflect.Float64:
		f = rv.Float()
	case reflect.String:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(rv.String()), 64); err != nil {
			d.fail(path, "%q is not a number", rv.String())
			return 0, false
		}
	default:
		neg, n, _, problem := integer(v)
		if problem != "" {
			d.fail(path, "want a number, got %s", describe(v))
			return 0, false
		}
		if f = float64(n); neg {
			f = -f
		}
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail(path, "%v is not a finite number", f)
		return 0, false
	}
	return f, true
}

// duration reads a non-negative duration: a string with a unit ("300ms"),
// a time.Duration, or a bare zero.
func (d *decoder) duration(path string, v any) (time.Duration, bool) {
	var dur time.Duration
	switch x := v.(type) {
	case time.Duration:
		dur = x
	case string:
		var err error
		if dur, err = time.ParseDuration(strings.TrimSpace(x)); err != nil {
			d.fail(path, "bad duration %q (want e.g. 300ms, 30s, 10m)", x)
			return 0, false
		}
	default:
		_, n, text, problem := integer(v)
		switch {
		case problem != "":
			d.fail(path, "want a duration such as 300ms, got %s", describe(v))
			return 0, false
		case n != 0:
			d.fail(path, "duration %s needs a unit, e.g. \"%ss\"", text, text)
			return 0, false
		}
	}
	if dur < 0 {
		d.fail(path, "negative duration %q", fmt.Sprint(v))
		return 0, false
	}
	return dur, true
}

// describe names a value's kind for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map:
		return "a map"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return fmt.Sprintf("the number %v", v)
	}
	return fmt.Sprintf("a %T", v)
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// join appends a key to a path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a list index to a path.
func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// sortByPath sorts errors by key path, comparing runs of digits as numbers
// so that rules[10] follows rules[9]; errors on one path keep their order.
func sortByPath(errs []*FieldError) {
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return comparePaths(a.Path, b.Path) })
}

func comparePaths(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(int(a[0]), int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

// digitRun returns the length of the run of ASCII digits starting s.
func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// closest returns the known key nearest to key by edit distance, or ""
// when none is within two edits (and closer than the key's own length).
func closest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist && d < len(key) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
