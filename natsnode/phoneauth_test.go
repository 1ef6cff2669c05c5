package natsnode

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
)

// TestPhonePermissions: a phone may use only the subjects its ticket
// grants (by default its own subtree and its own inbox prefix), may answer
// requests it receives, and is refused everything else; an empty grant
// allows nothing.
func TestPhonePermissions(t *testing.T) {
	ca := newTestCA(t)
	alice, phone, mute := ca.member(t, "alice"), ca.member(t, "pixel"), ca.member(t, "mute")
	roles := &roleSet{}
	roles.set(alice, RoleMember)
	roles.set(phone, RolePhone)
	roles.set(mute, RolePhone)
	pub, sub := identity.DefaultPhoneSubjects("pixel")
	cfg := baseConfig(t, "hub", newKeySet(alice, phone, mute).has)
	cfg.Cluster.Port = 0
	cfg.Role = roles.role
	cfg.PhoneGrant = func(k identity.NodePublic) PhoneGrant {
		if k == phone.id.Public() {
			return PhoneGrant{Pub: pub, Sub: sub}
		}
		return PhoneGrant{}
	}
	n := startNode(t, cfg, nil)
	anc := dial(t, n, alice, nil)
	var perrs asyncErrs
	pnc, err := nats.Connect(n.ClientURL(), phone.nkeyOpt(), nats.NoReconnect(),
		nats.ErrorHandler(perrs.handler), nats.CustomInboxPrefix(identity.PhoneInboxPrefix("pixel")))
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()

	// Its own subject, to a member.
	got, err := anc.SubscribeSync("phones.pixel.>")
	if err != nil {
		t.Fatal(err)
	}
	anc.Flush()
	if err := pnc.Publish("phones.pixel.gps", []byte("52.5,13.4")); err != nil {
		t.Fatal(err)
	}
	if m, err := got.NextMsg(5 * time.Second); err != nil || string(m.Data) != "52.5,13.4" {
		t.Fatalf("member got %v, %v", m, err)
	}
	// Outside the grant: refused both ways.
	pnc.Publish("orders.new", []byte("x"))
	pnc.SubscribeSync("orders.>")
	pnc.Flush()
	waitFor(t, 5*time.Second, "publish outside the grant refused", func() bool { return perrs.has("orders.new") })
	waitFor(t, 5*time.Second, "subscribe outside the grant refused", func() bool { return perrs.has("orders.>") })
	// The shared inbox would show it every other client's replies.
	pnc.SubscribeSync("_INBOX.>")
	pnc.Flush()
	waitFor(t, 5*time.Second, "subscribe to _INBOX.> refused", func() bool { return perrs.has("_INBOX.>") })

	// It serves a request on its subtree (allow_responses)…
	svc, err := pnc.Subscribe("phones.pixel.ping", func(m *nats.Msg) { m.Respond([]byte("pong")) })
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Unsubscribe()
	pnc.Flush()
	if m, err := anc.Request("phones.pixel.ping", nil, 5*time.Second); err != nil || string(m.Data) != "pong" {
		t.Fatalf("request to the phone: %v, %v", m, err)
	}
	// …and makes requests with its own inbox prefix.
	echo, _ := anc.Subscribe("phones.pixel.echo", func(m *nats.Msg) { m.Respond(m.Data) })
	defer echo.Unsubscribe()
	anc.Flush()
	if m, err := pnc.Request("phones.pixel.echo", []byte("hi"), 5*time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("request from the phone: %v, %v", m, err)
	}

	// An empty grant allows nothing at all.
	var merrs asyncErrs
	mnc, err := nats.Connect(n.ClientURL(), mute.nkeyOpt(), nats.NoReconnect(), nats.ErrorHandler(merrs.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer mnc.Close()
	mnc.Publish("phones.mute.x", nil)
	mnc.Flush()
	waitFor(t, 5*time.Second, "an empty grant refuses publishing", func() bool { return merrs.has("phones.mute.x") })
}
