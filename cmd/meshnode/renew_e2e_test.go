package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/meshlab"
)

// TestRenew runs a mesh whose tickets and certificates live 3 minutes for
// 5 minutes: every node renews by itself (at 2/3 of the lifetime) without
// dropping a NATS route, and gamma, stopped before its first renewal and
// started again after its ticket ran out, comes back degraded, renews from
// alpha and turns healthy. It is the one long e2e test (~5.5 min).
func TestRenew(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if _, err := lab.AddNode(name); err != nil {
			t.Fatal(err)
		}
	}
	alpha, beta, gamma := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]
	if err := alpha.Init("renew", "--member-validity", "3m"); err != nil {
		t.Fatal(err)
	}
	if err := alpha.Up(); err != nil {
		t.Fatal(err)
	}
	if err := alpha.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*meshlab.Node{beta, gamma} {
		tok, err := alpha.Invite()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(alpha, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: mesh complete after %s", time.Since(start).Round(time.Second))

	first := map[string]*api.Status{}
	for _, n := range lab.Nodes {
		st := mustStatus(t, n)
		if got := st.Renewal.MemberValidity; got != 3*time.Minute {
			t.Fatalf("%s: member validity %s, want the mesh's 3m (adopted from the join answer)", n.Name, got)
		}
		if left := time.Until(st.TicketExpires); left > 3*time.Minute+time.Second {
			t.Fatalf("%s: ticket valid for %s, want at most 3m", n.Name, left)
		}
		first[n.Name] = st
	}
	// The routes between alpha and beta, who run throughout.
	alphaBeta := routesTo(first["alpha"], "beta")
	betaAlpha := routesTo(first["beta"], "alpha")
	if len(alphaBeta) == 0 || len(betaAlpha) == 0 {
		t.Fatalf("no routes between alpha and beta: %v / %v", first["alpha"].NATS.Routes, first["beta"].NATS.Routes)
	}
	t.Logf("figure: alpha→beta route connections %v, beta→alpha %v", alphaBeta, betaAlpha)

	// gamma stops before its first renewal (due at 2/3 of 4 minutes: the
	// ticket starts a minute back) and stays off until its ticket ran out.
	gammaExpires := first["gamma"].TicketExpires
	if time.Until(gammaExpires.Add(-80*time.Second)) < 0 {
		t.Fatalf("gamma renews before it can be stopped (expires %s)", gammaExpires)
	}
	gamma.Stop(10 * time.Second)
	t.Logf("gamma stopped; its ticket expires %s", gammaExpires.Format(time.TimeOnly))
	select {
	case <-time.After(time.Until(gammaExpires) + 5*time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	restarted := time.Now()
	if err := gamma.Up(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "gamma starts degraded", func() error {
		if !strings.Contains(gamma.Tail(200), "starting degraded") {
			return fmt.Errorf("no 'starting degraded' in gamma's log")
		}
		return nil
	})
	eventually(t, 90*time.Second, "gamma renews and rejoins", func() error {
		st, err := gamma.Status()
		if err != nil {
			return err
		}
		if st.Degraded != "" || st.Renewal.Count < 1 || !st.TicketExpires.After(time.Now()) {
			return fmt.Errorf("degraded %q, renewals %d, ticket expires %s", st.Degraded, st.Renewal.Count, st.TicketExpires)
		}
		return nil
	})
	t.Logf("figure: gamma restarted after expiry → renewed: %s", time.Since(restarted).Round(time.Second))

	// Five minutes in: everyone healthy, renewed at least once, with the
	// alpha-beta routes unchanged.
	select {
	case <-time.After(time.Until(start.Add(5 * time.Minute))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "every node healthy", func() error {
		for _, n := range lab.Nodes {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if !st.Healthy {
				return fmt.Errorf("%s: %v", n.Name, st.Problems)
			}
		}
		return nil
	})
	for _, n := range lab.Nodes {
		st := mustStatus(t, n)
		if st.Renewal.Count < 1 || st.Renewal.Last.IsZero() || !st.TicketExpires.After(first[n.Name].TicketExpires) || !st.CertExpires.After(first[n.Name].CertExpires) {
			t.Errorf("%s: renewals %d (last %s), ticket expires %s (was %s), cert %s (was %s)", n.Name, st.Renewal.Count, st.Renewal.Last,
				st.TicketExpires, first[n.Name].TicketExpires, st.CertExpires, first[n.Name].CertExpires)
		}
		t.Logf("figure: %s renewed %d times, ticket now expires in %s", n.Name, st.Renewal.Count, time.Until(st.TicketExpires).Round(time.Second))
		switch n {
		case alpha:
			if got := routesTo(st, "beta"); !slices.Equal(got, alphaBeta) {
				t.Errorf("alpha→beta route connections changed across renewals: %v, then %v", alphaBeta, got)
			} else {
				t.Logf("figure: alpha→beta route connections unchanged after renewals: %v", got)
			}
		case beta:
			if got := routesTo(st, "alpha"); !slices.Equal(got, betaAlpha) {
				t.Errorf("beta→alpha route connections changed across renewals: %v, then %v", betaAlpha, got)
			}
		}
	}
	// Renewals happened while the routes stood: alpha and beta renewed
	// before gamma even came back.
	t.Logf("figure: test took %s", time.Since(start).Round(time.Second))
}

func mustStatus(t *testing.T, n *meshlab.Node) *api.Status {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// routesTo are the ids of st's route connections to the server named
// remote, sorted.
func routesTo(st *api.Status, remote string) []uint64 {
	var ids []uint64
	for _, r := range st.NATS.Routes {
		if r.Remote == remote {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
