package discovery

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// TestRecordsRoundTrip: the member table as an enrollment answer carries
// it comes back verified, with the signed meta it was built from; one bad
// record spoils the whole answer.
func TestRecordsRoundTrip(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("admin")
	d, err := New(n.config(t))
	if err != nil {
		t.Fatal(err)
	}
	pending := tm.enroll("pending", 0)
	d.Admit(pending.Ticket, []netip.AddrPort{netip.MustParseAddrPort("198.51.100.5:51820")})
	b, err := EncodeRecords(append(d.Members(), Member{Name: "hand-made"}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecords(b, tm.ca.Trust, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "admin" || got[1].Name != "pending" {
		t.Fatalf("decoded %+v", got)
	}
	if got[0].Self || got[0].meta == nil || !bytes.Equal(got[0].meta, d.localMeta) ||
		got[0].Endpoints[0] != netip.MustParseAddrPort("192.0.2.1:51820") {
		t.Fatalf("self record lost its meta or endpoints: %+v", got[0])
	}
	if got[1].meta != nil || got[1].Endpoints[0] != netip.MustParseAddrPort("198.51.100.5:51820") || got[1].State != StateUnknown {
		t.Fatalf("pending record: %+v", got[1])
	}
	if m, err := DecodeRecords(nil, tm.ca.Trust, time.Now()); err != nil || m != nil {
		t.Fatalf("empty input: %v %v", m, err)
	}

	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	recs[1].Ticket = append([]byte(nil), recs[1].Ticket...)
	recs[1].Ticket[len(recs[1].Ticket)-1] ^= 1
	bad, _ := json.Marshal(recs)
	if _, err := DecodeRecords(bad, tm.ca.Trust, time.Now()); err == nil {
		t.Fatal("a tampered record was accepted")
	}
	if _, err := DecodeRecords(b, newTestMesh(t).ca.Trust, time.Now()); err == nil {
		t.Fatal("records of another mesh were accepted")
	}
}

// FuzzDecodeRecords: whatever an admitting node sends, what comes back is
// verified: a valid ticket of the mesh, endpoints that fit node meta.
func FuzzDecodeRecords(f *testing.F) {
	tm := newTestMesh(f)
	d, err := New(tm.node("admin").config(f))
	if err != nil {
		f.Fatal(err)
	}
	d.Admit(tm.enroll("pending", 0).Ticket, []netip.AddrPort{netip.MustParseAddrPort("198.51.100.5:51820")})
	seed, err := EncodeRecords(d.Members())
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(seed))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"ticket":"AQ==","state":"alive"}]`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		members, err := DecodeRecords(b, tm.ca.Trust, now)
		if err != nil {
			return
		}
		for _, m := range members {
			tk, err := identity.ParseTicket(m.ticket)
			if err != nil || tk.Verify(tm.ca.Trust, now) != nil || tk.Name != m.Name || m.Self || CheckEndpoints(m.Endpoints) != nil {
				t.Fatalf("accepted an unverified member: %+v", m)
			}
		}
	})
}
