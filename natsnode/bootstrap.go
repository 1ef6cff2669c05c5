package natsnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// mode is how the nats-server runs. A fresh store starts in modeAlone or
// modeCore and is restarted into modeFull once, for good; a store with
// meta-group state, a server without JetStream and a server without a
// cluster start in modeFull. See doc.go ("JetStream bootstrap").
type mode uint8

const (
	// modeFull is the configuration as given: routes and, when
	// configured, (clustered) JetStream.
	modeFull mode = iota
	// modeCore has routes but no JetStream: a fresh store that knows
	// fewer than BootstrapExpect members, none of them running JetStream.
	modeCore
	// modeAlone has JetStream but no cluster: a fresh store that knows no
	// member but itself (the first node of a mesh).
	modeAlone
)

func (m mode) String() string {
	switch m {
	case modeCore:
		return "core"
	case modeAlone:
		return "alone"
	default:
		return "full"
	}
}

// nextMode is the mode the server should run in, given the mode it runs
// in now (cur; modeFull before the first start too), the member set (self
// included) and whether a routed member runs clustered JetStream. Modes
// only move forward: modeCore and modeAlone become modeFull, never the
// other way, so each node restarts its nats-server at most once.
func (s *Server) nextMode(cur mode, started bool, all []Member, jsPeer bool) mode {
	js := s.cfg.JetStream
	if !js.Enabled || !s.cfg.clustered() || hasJetStreamState(s.cfg.StoreDir) {
		return modeFull
	}
	if started && cur == modeFull {
		return modeFull
	}
	n := len(distinctAddrs(all))
	switch {
	case n >= 2 && n >= js.BootstrapExpect:
		return modeFull
	case n >= 2 && hasStandaloneState(s.cfg.StoreDir):
		// This node ran JetStream alone (it is the mesh's first node):
		// its JetStream is the mesh's, and it brings it into the meta
		// group it forms with the members that joined since.
		return modeFull
	case n >= 2 && jsPeer:
		// A routed member already runs clustered JetStream: there is a
		// group to join and none to start.
		return modeFull
	case n >= 2:
		return modeCore
	case started && cur == modeCore:
		// Members left a core-mode server; it stays as it is rather
		// than turning into a lone one.
		return modeCore
	default:
		return modeAlone
	}
}

// hasStandaloneState reports whether the store holds JetStream state of a
// server that ran without a cluster: a JetStream directory but no
// meta-group state.
func hasStandaloneState(storeDir string) bool {
	fi, err := os.Stat(filepath.Join(storeDir, server.JetStreamStoreDir))
	return err == nil && fi.IsDir() && !hasJetStreamState(storeDir)
}

// Stream adoption.
//
// Trap: nats-server does not carry the streams of a server that ran
// without a cluster into the meta group when it is restarted with one.
// It recovers them from disk, finds no stream assignment for them, and
// checkForOrphans deletes them 30 s after the meta layer recovered
// (jetstream_cluster.go checkForOrphans, getOrphans); a follower that
// installs a meta snapshot deletes them silently. But a stream assignment
// for a stream whose directory is already there reuses it, messages and
// all (processClusterCreateStream → addStream → the file store recovers
// its blocks), and a durable consumer created under the name of an
// existing consumer directory recovers its delivered and ack floors.
//
// So before the first clustered start the streams are moved out of the
// server's store into standaloneDir, where nats-server never looks; once
// the meta group has a leader each one is moved back and declared
// through the meta layer, placed on this server (R1, by a tag only this
// server carries), then its placement is given back and its durable
// consumers are declared again. TestLoneNodeGrowsToR3 and
// TestTrapStandaloneStreamsAreOrphans pin both halves.

// standaloneDir holds streams waiting to be adopted into the meta group.
const standaloneDir = "standalone-streams"

// serverTag is the placement tag only this server carries.
func serverTag(name string) string { return "meshnode.server:" + strings.ToLower(name) }

// streamsDir is where nats-server keeps the global account's streams.
func streamsDir(storeDir string) string {
	return filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams")
}

// setAsideStandaloneStreams moves the streams of a standalone run out of
// nats-server's reach. It runs only before a clustered start on a store
// without meta-group state, and is idempotent (a crash half way leaves
// the rest for the next start).
func setAsideStandaloneStreams(storeDir string) (int, error) {
	if !hasStandaloneState(storeDir) {
		return 0, nil
	}
	src := streamsDir(storeDir)
	ents, err := os.ReadDir(src)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	dst := filepath.Join(storeDir, standaloneDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dst, e.Name())); err == nil {
			return n, fmt.Errorf("stream %q is set aside twice", e.Name())
		}
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// pendingAdoption lists the streams set aside and not yet adopted.
func pendingAdoption(storeDir string) []string {
	ents, err := os.ReadDir(filepath.Join(storeDir, standaloneDir))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// errAdoptLater means the meta group cannot take a stream yet.
var errAdoptLater = errors.New("no JetStream meta leader yet")

// adoptStreams adopts every stream set aside, when the meta group has a
// leader. It runs on the loop goroutine only.
func (s *Server) adoptStreams(ns *server.Server) {
	names := pendingAdoption(s.cfg.StoreDir)
	if len(names) == 0 {
		return
	}
	if jsz, err := ns.Jsz(nil); err != nil || jsz.Meta == nil || jsz.Meta.Leader == "" {
		return
	}
	nc, err := s.ConnectInProcess()
	if err != nil {
		return
	}
	defer nc.Close()
	for _, name := range names {
		err := s.adoptStream(nc, name)
		switch {
		case err == nil:
			s.log.Info("standalone stream adopted into the JetStream meta group", "stream", name)
		case errors.Is(err, errAdoptLater):
			return
		default:
			s.setAdoptErr(fmt.Sprintf("stream %s: %v", name, err))
			s.log.Error("standalone stream not adopted; it stays set aside", "stream", name, "dir", filepath.Join(s.cfg.StoreDir, standaloneDir, name), "err", err)
		}
	}
}

func (s *Server) setAdoptErr(msg string) {
	s.mu.Lock()
	s.adoptErr = msg
	s.mu.Unlock()
}

// apiTimeout bounds one JetStream API request of the adoption.
const apiTimeout = 10 * time.Second

// adoptStream moves one stream back into the store and declares it.
func (s *Server) adoptStream(nc *nats.Conn, name string) error {
	aside := filepath.Join(s.cfg.StoreDir, standaloneDir, name)
	var fi server.FileStreamInfo
	if err := readJSON(filepath.Join(aside, "meta.inf"), &fi); err != nil {
		return err
	}
	if fi.Name != name {
		return fmt.Errorf("directory holds stream %q", fi.Name)
	}
	// The name must be free in the meta group: a stream of the same name
	// made elsewhere is not this one.
	var info server.JSApiStreamInfoResponse
	if err := jsRequest(nc, server.JSApiStreamInfoT, name, nil, &info); err != nil {
		return fmt.Errorf("%w: %v", errAdoptLater, err)
	}
	switch {
	case info.Error == nil:
		return errors.New("a stream of that name already exists in the meta group")
	case info.Error.ErrCode != uint16(server.JSStreamNotFoundErr):
		return fmt.Errorf("%w: %s", errAdoptLater, info.Error.Description)
	}
	cons, err := durableConsumers(aside)
	if err != nil {
		return err
	}

	cfg := fi.StreamConfig
	placement := cfg.Placement
	cfg.Replicas = 1
	cfg.Placement = &server.Placement{Tags: []string{serverTag(s.cfg.ServerName)}}
	live := filepath.Join(streamsDir(s.cfg.StoreDir), name)
	if err := os.MkdirAll(filepath.Dir(live), 0o700); err != nil {
		return err
	}
	if err := os.Rename(aside, live); err != nil {
		return err
	}
	var created server.JSApiStreamCreateResponse
	err = jsRequest(nc, server.JSApiStreamCreateT, name, cfg, &created)
	if err == nil && created.Error != nil {
		err = errors.New(created.Error.Description)
	}
	if err != nil {
		// Put it back unless the meta group took it after all (a reply
		// lost to a leader change): then it is adopted.
		var again server.JSApiStreamInfoResponse
		if jsRequest(nc, server.JSApiStreamInfoT, name, nil, &again) == nil && again.Error == nil {
			err = nil
		} else if rerr := os.Rename(live, aside); rerr != nil {
			return fmt.Errorf("create: %v; and moving it back: %v", err, rerr)
		} else {
			return fmt.Errorf("%w: create: %v", errAdoptLater, err)
		}
	}

	// Give the stream its own placement back, so it can be scaled and
	// moved like any other.
	cfg.Placement = placement
	var updated server.JSApiStreamUpdateResponse
	if err := jsRequest(nc, server.JSApiStreamUpdateT, name, cfg, &updated); err != nil || updated.Error != nil {
		s.log.Warn("adopted stream keeps its placement on this server", "stream", name, "err", errors.Join(err, apiErr(updated.Error)))
	}
	for _, c := range cons {
		req := server.CreateConsumerRequest{Stream: name, Config: c, Action: server.ActionCreate}
		var resp server.JSApiConsumerCreateResponse
		subj := fmt.Sprintf(server.JSApiDurableCreateT, name, c.Durable)
		if err := request(nc, subj, req, &resp); err != nil || resp.Error != nil {
			s.log.Error("durable consumer of an adopted stream not declared", "stream", name, "consumer", c.Durable, "err", errors.Join(err, apiErr(resp.Error)))
		}
	}
	return nil
}

// durableConsumers reads the configurations of a stream's durable
// consumers from its directory. Ephemeral ones are not carried over: their
// clients are gone with the standalone server.
func durableConsumers(streamDir string) ([]server.ConsumerConfig, error) {
	ents, err := os.ReadDir(filepath.Join(streamDir, "obs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []server.ConsumerConfig
	for _, e := range ents {
		var ci server.FileConsumerInfo
		if err := readJSON(filepath.Join(streamDir, "obs", e.Name(), "meta.inf"), &ci); err != nil {
			return nil, fmt.Errorf("consumer %s: %w", e.Name(), err)
		}
		if ci.Durable != "" {
			out = append(out, ci.ConsumerConfig)
		}
	}
	slices.SortFunc(out, func(a, b server.ConsumerConfig) int { return strings.Compare(a.Durable, b.Durable) })
	return out, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func jsRequest(nc *nats.Conn, subjectT, stream string, req, resp any) error {
	return request(nc, fmt.Sprintf(subjectT, stream), req, resp)
}

func request(nc *nats.Conn, subject string, req, resp any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	msg, err := nc.Request(subject, body, apiTimeout)
	if err != nil {
		return err
	}
	return json.Unmarshal(msg.Data, resp)
}

func apiErr(e *server.ApiError) error {
	if e == nil {
		return nil
	}
	return errors.New(e.Description)
}

// jetStreamPeer reports whether a routed server runs clustered JetStream,
// asking every server's statsz through the system account.
func (s *Server) jetStreamPeer() bool {
	nc, err := s.connectInternal(systemUser, s.systemPass, nil)
	if err != nil {
		return false
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return false
	}
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.STATSZ", inbox, nil); err != nil {
		return false
	}
	deadline := time.Now().Add(jsPeerProbeWait)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return false
		}
		var resp server.ServerStatsMsg
		if json.Unmarshal(msg.Data, &resp) == nil && resp.Server.Name != s.cfg.ServerName && resp.Server.JetStreamEnabled() {
			return true
		}
	}
}

// jsPeerProbeWait is how long jetStreamPeer collects answers, and
// jsPeerProbeEvery how often a core-mode server asks (every server
// answers a statsz ping).
const (
	jsPeerProbeWait  = 500 * time.Millisecond
	jsPeerProbeEvery = 2 * time.Second
)
