package audit

import (
	"strconv"
	"testing"
	"time"
)

func TestRecentIDsBoundedByCount(t *testing.T) {
	r := NewRecentIDs(3, time.Hour)
	for i := range 4 {
		r.Add("id" + strconv.Itoa(i))
	}
	if r.Contains("id0") {
		t.Error("oldest id kept beyond the size bound")
	}
	for _, id := range []string{"id1", "id2", "id3"} {
		if !r.Contains(id) {
			t.Errorf("%s forgotten", id)
		}
	}
	r.Add("")
	if r.Contains("") {
		t.Error("empty id remembered")
	}
	var nilSet *RecentIDs
	nilSet.Add("x")
	if nilSet.Contains("x") {
		t.Error("nil set remembered an id")
	}
}

func TestRecentIDsExpire(t *testing.T) {
	r := NewRecentIDs(10, 20*time.Millisecond)
	r.Add("a")
	if !r.Contains("a") {
		t.Fatal("fresh id not found")
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Contains("a") {
		if time.Now().After(deadline) {
			t.Fatal("id never expired")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
