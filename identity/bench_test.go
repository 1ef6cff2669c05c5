package identity

import "testing"

// Benchmarks for the per-member costs of gossip: every node verifies every
// member's ticket when it joins and on every metadata change.
//
//	go test -run '^$' -bench . -benchtime=2000x ./identity

func benchTicket(b *testing.B) (*CA, *Identity, *Ticket) {
	ca := fixedCA(b)
	id := FromSeed(seedCounting())
	tk, err := ca.IssueTicket("edge-07", id.Public(), id.WireGuardPublic(), RoleHub, t0, TicketValidity)
	if err != nil {
		b.Fatal(err)
	}
	return ca, id, tk
}

func BenchmarkTicketSign(b *testing.B) {
	ca, id, _ := benchTicket(b)
	pub, wg := id.Public(), id.WireGuardPublic()
	for b.Loop() {
		if _, err := ca.IssueTicket("edge-07", pub, wg, RoleHub, t0, TicketValidity); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTicketVerify(b *testing.B) {
	ca, _, tk := benchTicket(b)
	for b.Loop() {
		if err := tk.Verify(ca.Trust, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTicketParse(b *testing.B) {
	_, _, tk := benchTicket(b)
	enc := tk.Marshal()
	b.ReportMetric(float64(len(enc)), "bytes/ticket")
	for b.Loop() {
		if _, err := ParseTicket(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTicketParseVerify is what a node does with a ticket from gossip.
func BenchmarkTicketParseVerify(b *testing.B) {
	ca, _, tk := benchTicket(b)
	enc := tk.Marshal()
	for b.Loop() {
		p, err := ParseTicket(enc)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Verify(ca.Trust, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromSeed(b *testing.B) {
	s := seedCounting()
	for b.Loop() {
		FromSeed(s)
	}
}

func BenchmarkRevocationVerify(b *testing.B) {
	ca := fixedCA(b)
	r, err := ca.Revoke(FromSeed(seedOf(1)).Public(), "lost", t0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := r.Verify(ca.Trust); err != nil {
			b.Fatal(err)
		}
	}
}
