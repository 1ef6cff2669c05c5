package mesh

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/natsnode"
)

// Phones (see identity.PhoneTicket): a phone is a WireGuard peer of its
// hubs only. On a hub the plan adds the phone as a peer (AllowedIPs = its
// /128, no endpoint: the phone calls in and WireGuard roams with it) and
// the device forwards for it in userspace. Every other member routes the
// phone's /128 through one hub's peer entry, and only a hub the phone's
// CA-signed ticket names:
//
//  1. a named hub that advertises the phone in its signed node meta (it
//     had a handshake with the phone within handshakeFresh), first in
//     ticket order: the phone picks its tunnel, and a second tunnel
//     (NAME@hub2) works once its hub has seen the phone;
//  2. otherwise the first named hub that is alive (so the first packet
//     already has a way back, before any advertisement spreads);
//  3. otherwise the first named hub this node knows at all.
//
// A hub of the phone always keeps the phone's /128 on the phone's own peer
// (it must accept the phone's packets whichever hub carries the rest): a
// hub that is not the phone's current one reaches the phone only once the
// phone uses its tunnel.

// phonePlan is the phone part of a Plan; immutable like the rest.
type phonePlan struct {
	// all is every phone the plan admits, by name.
	all []plannedPhone
	// peers are this node's phone peers (it is their hub).
	peers []wg.Peer
	// local are the overlay addresses of those phones, for forwarding.
	local []netip.Addr
	// byKey admits phones to NATS.
	byKey map[identity.NodePublic]*identity.PhoneTicket
}

type plannedPhone struct {
	t     *identity.PhoneTicket
	local bool   // this node is one of its hubs
	via   string // the member this node routes it through; "" when local or none
}

// planPhones adds the phones of s to p. It runs last in NewPlan: it moves
// phone /128s onto hub peers that peerFor built.
func (p *Plan) planPhones(s Snapshot) {
	p.phone.byKey = make(map[identity.NodePublic]*identity.PhoneTicket, len(s.Phones))
	memberIdx := make(map[identity.NodePublic]int, len(p.Members))
	taken := make(map[wgtypes.Key]bool, len(p.Members)+1)
	addrs := make(map[netip.Addr]bool, len(p.Members)+1)
	for i, m := range p.Members {
		memberIdx[m.Node] = i
		taken[m.WireGuard.Key()] = true
		addrs[m.Addr] = true
	}
	addrs[s.Self.Addr] = true
	active := make(map[netip.Addr]bool, len(s.ActivePhones))
	for _, a := range s.ActivePhones {
		active[a] = true
	}
	// Where each phone /128 goes; applied to the peers below.
	routeTo := map[netip.Prefix]int{}
	for _, t := range s.Phones {
		if t == nil || p.isRevoked(t.Node) || p.phone.byKey[t.Node] != nil {
			continue
		}
		if _, member := memberIdx[t.Node]; member || t.Node == p.self || addrs[t.Addr] || taken[t.WireGuard.Key()] {
			continue // a key or address collision: the member wins
		}
		p.phone.byKey[t.Node] = t
		pp := plannedPhone{t: t, local: t.HasHub(p.self)}
		self128 := netip.PrefixFrom(t.Addr, 128)
		if pp.local {
			taken[t.WireGuard.Key()] = true
			p.phone.peers = append(p.phone.peers, wg.Peer{PublicKey: t.WireGuard.Key(), AllowedIPs: []netip.Prefix{self128}})
			p.phone.local = append(p.phone.local, t.Addr)
		} else if i, ok := p.routeHub(t, memberIdx, active); ok {
			routeTo[self128] = i
			pp.via = p.Members[i].Name
		}
		p.phone.all = append(p.phone.all, pp)
	}
	slices.SortFunc(p.phone.all, func(a, b plannedPhone) int { return cmp.Compare(a.t.Name, b.t.Name) })

	// Every phone /128 is held by exactly one peer: wg.Apply refuses a
	// prefix claimed twice, and WireGuard would route by whichever came
	// last. So it is taken off every member peer (a hub's meta may list
	// it) and put on the chosen one; a phone's own peer keeps it here.
	isPhone := func(pr netip.Prefix) bool {
		if pr.Bits() != 128 {
			return false
		}
		for _, pp := range p.phone.all {
			if pp.t.Addr == pr.Addr() {
				return true
			}
		}
		return false
	}
	for i := range p.Peers {
		var ips []netip.Prefix
		for _, pr := range p.Peers[i].AllowedIPs {
			if !isPhone(pr) {
				ips = append(ips, pr)
			}
		}
		// In a fixed order (the plan is a pure function: the same
		// snapshot gives the same peers, not a map's iteration order).
		var phones []netip.Prefix
		for pr, to := range routeTo {
			if to == i {
				phones = append(phones, pr)
			}
		}
		slices.SortFunc(phones, comparePrefix)
		p.Peers[i].AllowedIPs = append(ips, phones...)
	}
}

// routeHub picks the member that carries phone t for this node (see the
// rules at the top of this file).
func (p *Plan) routeHub(t *identity.PhoneTicket, memberIdx map[identity.NodePublic]int, active map[netip.Addr]bool) (int, bool) {
	self128 := netip.PrefixFrom(t.Addr, 128)
	first, firstAlive := -1, -1
	for _, h := range t.Hubs {
		i, ok := memberIdx[h]
		if !ok {
			continue
		}
		m := p.Members[i]
		if m.State == discovery.StateAlive && slices.Contains(m.Routes, self128) {
			return i, true
		}
		if first < 0 {
			first = i
		}
		if firstAlive < 0 && m.State == discovery.StateAlive {
			firstAlive = i
		}
	}
	if firstAlive >= 0 {
		return firstAlive, true
	}
	return first, first >= 0
}

// AllPeers is every WireGuard peer of the plan: members, then this node's
// phones.
func (p *Plan) AllPeers() []wg.Peer {
	if len(p.phone.peers) == 0 {
		return p.Peers
	}
	return append(slices.Clip(p.Peers), p.phone.peers...)
}

// LocalPhones are the overlay addresses of the phones this node is a hub of.
func (p *Plan) LocalPhones() []netip.Addr { return p.phone.local }

func (p *Plan) phoneTicket(k identity.NodePublic) (*identity.PhoneTicket, bool) {
	if p == nil || p.isRevoked(k) {
		return nil, false
	}
	t, ok := p.phone.byKey[k]
	return t, ok
}

// phoneState is what the node keeps between reconciles for its phones.
type phoneState struct {
	// advertised is what this hub last put in its node meta: the phones
	// it had a fresh handshake with.
	advertised []netip.Prefix
	active     []netip.Addr
}

// applyPhones runs after the plan's peers are applied: this hub forwards
// for its phones and advertises the ones it serves now. Called under
// reconcileMu.
func (n *Node) applyPhones(p *Plan) {
	n.dev.SetForward(p.LocalPhones())
	var active []netip.Addr
	var routes []netip.Prefix
	if len(p.phone.peers) > 0 {
		stats, err := n.dev.Peers()
		if err != nil {
			n.log.Warn("read WireGuard peers for phones", "err", err)
			return
		}
		hs := map[wgtypes.Key]time.Time{}
		for _, s := range stats {
			hs[s.PublicKey] = s.LastHandshake
		}
		type seen struct {
			addr netip.Addr
			at   time.Time
		}
		var fresh []seen
		for _, pp := range p.phone.all {
			if at := hs[pp.t.WireGuard.Key()]; pp.local && !at.IsZero() && time.Since(at) < handshakeFresh {
				fresh = append(fresh, seen{pp.t.Addr, at})
			}
		}
		// The meta holds discovery.MaxRoutes prefixes: the most recently
		// seen phones win; the others are routed by the default rule.
		slices.SortFunc(fresh, func(a, b seen) int { return b.at.Compare(a.at) })
		for i, f := range fresh {
			active = append(active, f.addr)
			if i < discovery.MaxRoutes {
				routes = append(routes, netip.PrefixFrom(f.addr, 128))
			}
		}
		slices.SortFunc(routes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	n.phones.active = active
	if slices.Equal(routes, n.phones.advertised) {
		return
	}
	if err := n.disc.SetLocal(n.eps, routes); err != nil {
		n.log.Warn("advertise phones", "err", err)
		return
	}
	n.phones.advertised = routes
	n.log.Info("phones served by this hub", "phones", routes)
}

// phoneGrant is natsnode's Config.PhoneGrant.
func (n *Node) phoneGrant(k identity.NodePublic) natsnode.PhoneGrant {
	return natsnode.PhoneGrantOf(n.plan.Load().phoneTicket)(k)
}

// AddPhone makes a phone (admin nodes only): a fresh seed, never stored,
// whose keys derive as a node's do; a CA-signed phone ticket, gossiped to
// every member; and what the phone needs, returned once.
func (n *Node) AddPhone(req api.PhoneAddRequest) (*api.PhoneAddResponse, error) {
	ca := n.member.CA
	if ca == nil {
		return nil, errNoCA
	}
	if err := identity.ValidateName(req.Name); err != nil {
		return nil, fmt.Errorf("phone name: %w", err)
	}
	if t, ok := n.disc.PhoneSet().ByName(req.Name); ok {
		return nil, fmt.Errorf("a phone called %q exists already (%s); remove it first", req.Name, t.Addr)
	}
	if len(req.Hubs) == 0 {
		return nil, errors.New("--hub: at least one hub is needed")
	}
	members := map[string]discovery.Member{}
	for _, m := range n.disc.Members() {
		if !n.revs.IsRevoked(m.Node) {
			members[m.Name] = m
		}
	}
	var hubs []identity.NodePublic
	var tunnels []api.PhoneHub
	for _, name := range req.Hubs {
		m, ok := members[name]
		if !ok {
			return nil, fmt.Errorf("--hub %s: no such member", name)
		}
		if len(m.Endpoints) == 0 {
			return nil, fmt.Errorf("--hub %s: the member advertises no underlay endpoint a phone could dial", name)
		}
		if slices.Contains(hubs, m.Node) {
			return nil, fmt.Errorf("--hub %s: given twice", name)
		}
		hubs = append(hubs, m.Node)
		port := int(m.NATSClientPort)
		if port == 0 {
			port = n.cfg.NATSClientPort
		}
		tunnels = append(tunnels, api.PhoneHub{
			Name: m.Name, PublicKey: m.WireGuard, Endpoint: phoneEndpoint(m.Endpoints), Addr: m.Addr,
			NATSURL: "tls://" + net.JoinHostPort(m.Addr.String(), strconv.Itoa(port)),
		})
	}
	pub, sub := req.Pub, req.Sub
	if len(pub) == 0 && len(sub) == 0 {
		pub, sub = identity.DefaultPhoneSubjects(req.Name)
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = defaultPhoneTTL
	}
	seed, err := identity.NewSeed()
	if err != nil {
		return nil, err
	}
	id := identity.FromSeed(seed)
	now := time.Now()
	t, err := ca.IssuePhoneTicket(req.Name, id, hubs, pub, sub, now, ttl)
	if err != nil {
		return nil, err
	}
	if err := n.disc.AddPhone(t); err != nil {
		return nil, err
	}
	n.log.Info("phone added", "name", t.Name, "addr", t.Addr, "hubs", req.Hubs, "expires", t.NotAfter)
	n.reconcile()
	wgPriv := id.WireGuardPrivate()
	return &api.PhoneAddResponse{
		Name: t.Name, Addr: t.Addr, Prefix: n.member.Trust.Prefix(), Node: t.Node,
		WireGuardPrivate: base64.StdEncoding.EncodeToString(wgPriv[:]),
		NKeySeed:         string(id.NKeySeedText()), NKey: t.Node.NKey(),
		InboxPrefix: identity.PhoneInboxPrefix(t.Name), Pub: t.Pub, Sub: t.Sub,
		Expires: t.NotAfter, Issued: now, Tunnels: tunnels,
		CAPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.member.Trust.Cert.Raw})), Mesh: n.member.Trust.Mesh,
	}, nil
}

// defaultPhoneTTL is a phone ticket's validity when none is asked for.
const defaultPhoneTTL = 365 * 24 * time.Hour

// phoneEndpoint is the hub endpoint a phone dials: a phone is on some
// other network, so a global address beats a private one, and IPv4 beats
// IPv6 (mobile IPv4 is everywhere; IPv6 often is not).
func phoneEndpoint(eps []netip.AddrPort) netip.AddrPort {
	best := slices.Clone(eps)
	rank := func(a netip.AddrPort) int {
		ip := a.Addr().Unmap()
		r := 0
		if ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			r += 2
		}
		if !ip.Is4() {
			r++
		}
		return r
	}
	slices.SortStableFunc(best, func(a, b netip.AddrPort) int { return cmp.Compare(rank(a), rank(b)) })
	return netip.AddrPortFrom(best[0].Addr().Unmap(), best[0].Port())
}

// RemovePhone revokes a phone mesh-wide (admin nodes only): its hubs drop
// the peer and every node's NATS refuses its nkey and closes its
// connections, as for a revoked member.
func (n *Node) RemovePhone(name string) error {
	ca := n.member.CA
	if ca == nil {
		return errNoCA
	}
	t, ok := n.disc.PhoneSet().ByName(name)
	if !ok {
		return fmt.Errorf("no phone called %q", name)
	}
	r, err := ca.Revoke(t.Node, "phone "+name+" removed", time.Now())
	if err != nil {
		return err
	}
	if err := n.disc.Revoke(r); err != nil {
		return err
	}
	n.log.Info("phone removed", "name", name, "addr", t.Addr)
	n.reconcile()
	return nil
}

// Phones lists the phones this node knows; on their hubs with the
// WireGuard counters the hub sees.
func (n *Node) Phones() []api.PhoneStatus {
	p := n.plan.Load()
	stats := map[wgtypes.Key]wg.PeerStats{}
	if n.dev != nil && len(p.phone.peers) > 0 {
		if peers, err := n.dev.Peers(); err == nil {
			for _, s := range peers {
				stats[s.PublicKey] = s
			}
		}
	}
	names := map[identity.NodePublic]string{n.member.ID.Public(): n.member.Ticket.Name}
	for _, m := range p.Members {
		names[m.Node] = m.Name
	}
	out := []api.PhoneStatus{}
	for _, pp := range p.phone.all {
		ps := api.PhoneStatus{Name: pp.t.Name, Addr: pp.t.Addr, Local: pp.local, Via: pp.via, Expires: pp.t.NotAfter}
		for _, h := range pp.t.Hubs {
			ps.Hubs = append(ps.Hubs, cmp.Or(names[h], h.ShortString()))
		}
		if !pp.local && pp.via == "" {
			ps.Via = "-"
		}
		if s, ok := stats[pp.t.WireGuard.Key()]; ok {
			ps.LastHandshake, ps.RxBytes, ps.TxBytes = s.LastHandshake, s.RxBytes, s.TxBytes
			if s.Endpoint.IsValid() {
				ps.Endpoint = s.Endpoint.String()
			}
		}
		out = append(out, ps)
	}
	return out
}

// phoneStatus fills the phone part of Status on a hub.
func (n *Node) phoneStatus(st *api.Status) {
	for _, ps := range n.Phones() {
		if ps.Local {
			st.Phones = append(st.Phones, ps)
		}
	}
	if n.dev == nil || len(st.Phones) == 0 {
		return
	}
	fs := n.dev.ForwardStats()
	st.Forwarding = fmt.Sprintf("userspace (%s), %d phones, %d packets forwarded, %d dropped", fs.Mode, fs.Phones, fs.Forwarded, fs.Dropped)
	if len(n.eps) == 0 {
		st.Problems = append(st.Problems, "this hub has phones but no underlay endpoint they could dial")
	}
}

// phoneBackend is what the phone endpoints need; the node has it, test
// backends may not.
type phoneBackend interface {
	AddPhone(api.PhoneAddRequest) (*api.PhoneAddResponse, error)
	RemovePhone(name string) error
	Phones() []api.PhoneStatus
}

// registerPhoneAPI adds the phone endpoints to the local API.
func registerPhoneAPI(mux *http.ServeMux, b apiBackend) {
	pb, ok := b.(phoneBackend)
	if !ok {
		return
	}
	mux.HandleFunc("GET "+api.PathPhones, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, pb.Phones())
	})
	mux.HandleFunc("POST "+api.PathPhoneAdd, func(w http.ResponseWriter, r *http.Request) {
		var req api.PhoneAddRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: "bad request: " + err.Error()})
			return
		}
		resp, err := pb.AddPhone(req)
		if err != nil {
			writeJSON(w, http.StatusConflict, api.ErrorResponse{Error: err.Error()})
			return
		}
		// The answer carries the phone's private keys: no cache may keep it.
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST "+api.PathPhoneRemove, func(w http.ResponseWriter, r *http.Request) {
		var req api.PhoneRemoveRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: "bad request: " + err.Error()})
			return
		}
		if err := pb.RemovePhone(strings.TrimSpace(req.Name)); err != nil {
			writeJSON(w, http.StatusConflict, api.ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
}
