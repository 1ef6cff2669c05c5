package enroll

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestStatsCountJoins: admissions, refusals by code and rate-limited
// requests are counted as the endpoint answers them.
func TestStatsCountJoins(t *testing.T) {
	f := newEnrollFixture(t, true, 3)
	f.srv.lim.window = 30 * time.Second
	if st := f.srv.Stats(); st.JoinsAdmitted != 0 || len(st.JoinsRefused) != 0 || st.RateLimited != 0 {
		t.Fatalf("fresh endpoint counts %+v", st)
	}
	tok := f.token(time.Hour, 0, time.Now())
	id := newIdentity(t)
	if _, err := Join(context.Background(), f.addr, tok, id, "counted", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Join(context.Background(), f.addr, tok, newIdentity(t), "again", nil); err == nil {
		t.Fatal("a used token was accepted")
	}
	if status, _ := f.post(http.MethodPost, "/v2/join", []byte("{")); status != http.StatusBadRequest {
		t.Fatalf("malformed join: status %d", status)
	}
	// Third failure from this address: the next request is rate limited.
	if status, _ := f.post(http.MethodPost, "/v2/join", []byte("{")); status != http.StatusBadRequest {
		t.Fatalf("malformed join: status %d", status)
	}
	if status, _ := f.post(http.MethodPost, "/v2/join", []byte("{")); status != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures: status %d, want 429", status)
	}
	st := f.srv.Stats()
	if st.JoinsAdmitted != 1 || st.JoinsRefused[CodeTokenUsed] != 1 || st.JoinsRefused[CodeMalformed] != 2 || st.RateLimited != 1 {
		t.Fatalf("Stats = %+v, want 1 admitted, 1 %s, 2 %s, 1 rate limited", st, CodeTokenUsed, CodeMalformed)
	}
}
