package config

import (
	"fmt"
	"strings"
)

// suggest proposes the valid key an unknown key was probably meant to be, or lists the valid keys
// when none is close enough to be a likely typo.
func suggest(key string, valid []string, section string) string {
	best, bestDist := "", -1
	lower := strings.ToLower(key)
	for _, v := range valid {
		dist := editDistance(lower, v)
		if bestDist < 0 || dist < bestDist {
			best, bestDist = v, dist
		}
	}
	if best != "" && bestDist <= closeEnough(key) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	where := "here"
	if section != "" {
		where = "under " + section
	}
	return fmt.Sprintf("valid keys %s are: %s", where, strings.Join(valid, ", "))
}

// closeEnough is the largest edit distance still read as a typo of a key this long.
func closeEnough(key string) int {
	switch n := len(key); {
	case n <= 3:
		return 1
	case n <= 8:
		return 2
	default:
		return 3
	}
}

// editDistance is the optimal-string-alignment distance: insertions, deletions, substitutions
// and swaps of adjacent characters each cost one.
func editDistance(a, b string) int {
	// Keys are short; guard against pathological input all the same.
	const maxLen = 256
	if len(a) > maxLen || len(b) > maxLen {
		return maxLen
	}
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
