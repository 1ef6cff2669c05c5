package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Observed endpoints and the path loop.
//
// A member behind NAT cannot know its public (mapped) endpoint; a hub it
// talks to can: WireGuard roams the member's peer to the address its
// authenticated packets come from. So every node answers, on its overlay
// address (TCP defaults.ObservePort, plain HTTP inside WireGuard), GET
// /v1/observe with "your WireGuard endpoint as I see it". The overlay
// source address is the authentication: WireGuard delivers a packet from a
// member's /128 only from that member's peer. Only a member this node
// reaches directly is answered (a relayed one's packets come from its hub).
// The same answer says which of the members the asker names (reach=) this
// node has a direct path to: the hub reports that both ends of a relayed
// pair read to pick the same hub.
//
// A member asks every hub every observeEvery (every observeRetry until the
// hub first answers) and advertises its mapped endpoints in its signed
// meta, before its local ones (discovery.SetEndpoints). Its keepalive
// toward hubs (25 s, under the kernel's 30 s UDP conntrack timeout) keeps
// the mapping it advertises open.
const (
	observeEvery   = 10 * time.Second
	observeRetry   = 2 * time.Second
	observeTimeout = 3 * time.Second
	// observeMaxReach bounds the members one request asks about.
	observeMaxReach = 64
	pathTick        = time.Second
)

// observeAnswer is the wire format of /v1/observe (JSON).
type observeAnswer struct {
	Endpoint netip.AddrPort `json:"endpoint"`
	Reach    []netip.Addr   `json:"reach,omitempty"`
}

// natState is the node's path machine and what feeds it.
type natState struct {
	mode  PathMode
	paths *Paths // owned by the path loop
	step  atomic.Pointer[PathStep]

	mu       sync.Mutex
	observed map[identity.NodePublic]observation // by hub
	reports  map[identity.NodePublic]HubReport
	ask      []netip.Addr     // addresses of the members not reached directly
	adv      []netip.AddrPort // what the meta advertises now
}

type observation struct {
	hub string
	ep  netip.AddrPort
}

// paths returns the last step's paths (nil before the first).
func (s *natState) current() map[identity.NodePublic]Path {
	if st := s.step.Load(); st != nil {
		return st.Paths
	}
	return nil
}

// advertised is observed endpoints (by hub name) then the local ones,
// deduplicated, at most discovery.MaxEndpoints.
func advertised(obs map[identity.NodePublic]observation, local []netip.AddrPort) []netip.AddrPort {
	list := make([]observation, 0, len(obs))
	for _, o := range obs {
		list = append(list, o)
	}
	slices.SortFunc(list, func(a, b observation) int {
		if a.hub < b.hub {
			return -1
		} else if a.hub > b.hub {
			return 1
		}
		return 0
	})
	var out []netip.AddrPort
	for _, o := range list {
		if o.ep.IsValid() && !slices.Contains(out, o.ep) {
			out = append(out, o.ep)
		}
	}
	for _, l := range local {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	if len(out) > discovery.MaxEndpoints {
		out = out[:discovery.MaxEndpoints]
	}
	return out
}

// startPaths starts the observe endpoint, the observer and the path loop;
// the returned func stops them.
func (n *Node) startPaths(ctx context.Context) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	if n.member.Ticket.Roles.Has(identity.RoleHub) {
		// Hubs relay between members in userspace (mesh/wg/relay.go).
		n.dev.SetRelay(true)
	}
	addr := net.JoinHostPort(n.member.Ticket.Addr.String(), strconv.Itoa(defaults.ObservePort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("observe endpoint %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/observe", n.serveObserve)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: observeTimeout, ReadTimeout: observeTimeout, WriteTimeout: observeTimeout}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("observe endpoint stopped", "err", err)
		}
	}()
	go func() { defer wg.Done(); n.observeLoop(ctx) }()
	go func() { defer wg.Done(); n.pathLoop(ctx) }()
	return func() {
		cancel()
		srv.Close()
		wg.Wait()
	}, nil
}

func (n *Node) serveObserve(w http.ResponseWriter, r *http.Request) {
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "bad source", http.StatusBadRequest)
		return
	}
	p := n.plan.Load()
	paths := n.nat.current()
	var asker *discovery.Member
	byAddr := make(map[netip.Addr]*discovery.Member, len(p.Members))
	for i := range p.Members {
		m := &p.Members[i]
		byAddr[m.Addr] = m
		if m.Addr == src.Addr().Unmap() {
			asker = m
		}
	}
	if asker == nil {
		http.Error(w, "not a member's overlay address", http.StatusForbidden)
		return
	}
	if paths[asker.Node].Kind != PathDirect {
		http.Error(w, "no direct path to you", http.StatusConflict)
		return
	}
	var ans observeAnswer
	if peers, err := n.dev.Peers(); err == nil {
		for _, ps := range peers {
			if ps.PublicKey == asker.WireGuard.Key() {
				ans.Endpoint = ps.Endpoint
			}
		}
	}
	q := r.URL.Query()["reach"]
	if len(q) > observeMaxReach {
		q = q[:observeMaxReach]
	}
	for _, s := range q {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if m := byAddr[a]; m != nil && paths[m.Node].Kind == PathDirect {
			ans.Reach = append(ans.Reach, a)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ans)
}

// observeLoop asks every hub for this node's endpoint and for the members
// it reaches, and advertises the endpoints hubs see.
func (n *Node) observeLoop(ctx context.Context) {
	if n.member.Ticket.Roles.Has(identity.RoleHub) {
		return // a hub's endpoints are its configured, reachable ones
	}
	client := &http.Client{Timeout: observeTimeout}
	next := map[identity.NodePublic]time.Time{}
	t := time.NewTicker(observeRetry / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, h := range n.plan.Load().Members {
			if !h.Roles.Has(identity.RoleHub) || h.State != discovery.StateAlive || now.Before(next[h.Node]) {
				continue
			}
			ans, err := n.observe(ctx, client, h.Addr)
			if err != nil {
				n.log.Debug("observe", "hub", h.Name, "err", err)
				next[h.Node] = now.Add(observeRetry)
				continue
			}
			next[h.Node] = now.Add(observeEvery)
			reach := map[identity.NodePublic]bool{}
			for _, m := range n.plan.Load().Members {
				if slices.Contains(ans.Reach, m.Addr) {
					reach[m.Node] = true
				}
			}
			n.nat.mu.Lock()
			n.nat.reports[h.Node] = HubReport{At: time.Now(), Reaches: reach}
			// A hub's word goes into our signed meta, so it must be an
			// endpoint members may be told to dial: a hub answering with
			// loopback or an overlay address would otherwise get this node
			// refused by every member's admission.
			if ans.Endpoint.IsValid() && (n.cfg.LabEndpoints || discovery.CheckDialable([]netip.AddrPort{ans.Endpoint}, n.member.Trust.Prefix()) == nil) {
				n.nat.observed[h.Node] = observation{hub: h.Name, ep: ans.Endpoint}
			} else if ans.Endpoint.IsValid() {
				n.log.Warn("observe: hub reports an endpoint members must not dial; ignored", "hub", h.Name, "endpoint", ans.Endpoint)
			}
			adv := advertised(n.nat.observed, n.eps)
			changed := !slices.Equal(adv, n.nat.adv)
			n.nat.adv = adv
			n.nat.mu.Unlock()
			if changed {
				n.log.Info("advertising endpoints", "endpoints", adv, "observed_by", h.Name)
				if err := n.disc.SetEndpoints(adv); err != nil {
					n.log.Warn("advertise endpoints", "err", err)
				}
			}
		}
	}
}

func (n *Node) observe(ctx context.Context, client *http.Client, hub netip.Addr) (observeAnswer, error) {
	n.nat.mu.Lock()
	ask := slices.Clone(n.nat.ask)
	n.nat.mu.Unlock()
	u := "http://" + net.JoinHostPort(hub.String(), strconv.Itoa(defaults.ObservePort)) + "/v1/observe"
	for i, a := range ask {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "reach=" + a.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return observeAnswer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return observeAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return observeAnswer{}, fmt.Errorf("observe: %s", resp.Status)
	}
	var ans observeAnswer
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans)
	return ans, err
}

// pathLoop steps the path machine every pathTick: it reconciles when a
// path's routing changed and sends the direct probes the machine asks for.
func (n *Node) pathLoop(ctx context.Context) {
	t := time.NewTicker(pathTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.stepPaths(time.Now())
	}
}

func (n *Node) stepPaths(now time.Time) {
	plan := n.plan.Load()
	stats := map[wgtypes.Key]PathFacts{}
	if peers, err := n.dev.Peers(); err == nil {
		for _, p := range peers {
			stats[p.PublicKey] = PathFacts{LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, Endpoint: p.Endpoint}
		}
		// Two ends that started together can each drop the other's
		// handshake answer and wait 5 s to retry (mesh/wg/crossed.go).
		for _, k := range n.dev.Uncross(peers, now) {
			n.log.Info("crossed WireGuard handshakes: initiating again at once", "member", nameOfKey(plan, k))
		}
	}
	n.nat.mu.Lock()
	adv := slices.Clone(n.nat.adv)
	var observed []netip.AddrPort
	for _, o := range n.nat.observed {
		observed = append(observed, o.ep)
	}
	reports := make(map[identity.NodePublic]HubReport, len(n.nat.reports))
	for k, v := range n.nat.reports {
		reports[k] = v
	}
	n.nat.mu.Unlock()
	in := PathInput{
		Now: now, SelfHub: n.member.Ticket.Roles.Has(identity.RoleHub), Mode: n.nat.mode,
		OurNAT: natHintOf(adv), Ours: adv, Reports: reports,
	}
	keys := map[identity.NodePublic]wgtypes.Key{}
	addrs := map[identity.NodePublic]netip.Addr{}
	for _, m := range plan.Members {
		f := stats[m.WireGuard.Key()]
		f.Name, f.Node, f.Hub, f.Alive = m.Name, m.Node, m.Roles.Has(identity.RoleHub), m.State == discovery.StateAlive
		f.Candidates = candidates(m.Endpoints, n.eps, observed)
		f.NAT = natHintOf(m.Endpoints)
		in.Members = append(in.Members, f)
		keys[m.Node], addrs[m.Node] = m.WireGuard.Key(), m.Addr
	}
	step := n.nat.paths.Step(in)
	prev := n.nat.step.Swap(&step)
	var ask []netip.Addr
	for _, k := range step.Ask {
		ask = append(ask, addrs[k])
	}
	n.nat.mu.Lock()
	n.nat.ask = ask
	n.nat.mu.Unlock()
	if prev != nil {
		for k, p := range step.Paths {
			if q := prev.Paths[k]; q.Kind != p.Kind || q.Via != p.Via {
				n.log.Info("path changed", "member", nameOf(plan, k), "path", p.String(), "was", q.String())
			}
		}
	}
	if step.Changed {
		n.reconcile()
	}
	for _, k := range step.Probe {
		if err := n.dev.Handshake(keys[k]); err != nil {
			n.log.Debug("direct probe not sent", "member", nameOf(plan, k), "err", err)
		}
	}
}

// nameOfKey names the member whose WireGuard key is k.
func nameOfKey(p *Plan, k wgtypes.Key) string {
	for _, m := range p.Members {
		if m.WireGuard.Key() == k {
			return m.Name
		}
	}
	return k.String()
}

func nameOf(p *Plan, k identity.NodePublic) string {
	for _, m := range p.Members {
		if m.Node == k {
			return m.Name
		}
	}
	return k.String()
}
