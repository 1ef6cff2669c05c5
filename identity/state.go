package identity

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// DefaultStateDir is where a node keeps its state unless told otherwise.
const DefaultStateDir = defaults.StateDir

// StateDir is a node's state directory. Its methods name the files in it;
// every package that keeps state asks here, so the layout lives in one place.
type StateDir string

func (d StateDir) path(name string) string { return filepath.Join(string(d), name) }

// SeedPath is the node's only secret (0600).
func (d StateDir) SeedPath() string { return d.path("identity.seed") }

// CACertPath is the mesh CA certificate every member holds.
func (d StateDir) CACertPath() string { return d.path("ca.crt") }

// CAKeyPath is the mesh CA key; only admin members have it (0600).
func (d StateDir) CAKeyPath() string { return d.path("ca.key") }

// NodeCertPath is the node's x509 certificate.
func (d StateDir) NodeCertPath() string { return d.path("node.crt") }

// TicketPath is the node's CA-signed ticket (binary).
func (d StateDir) TicketPath() string { return d.path("ticket.bin") }

// RouteSecretPath is the mesh-wide NATS route secret (0600).
func (d StateDir) RouteSecretPath() string { return d.path("route.secret") }

// RevocationsPath is the persisted revocation set.
func (d StateDir) RevocationsPath() string { return d.path("revocations.bin") }

// GossipKeysPath is the rotated gossip keys (0600; absent until the mesh
// first rotates its gossip key).
func (d StateDir) GossipKeysPath() string { return d.path("gossip.keys") }

// InvitesPath is the CA holder's store of join tokens (0600).
func (d StateDir) InvitesPath() string { return d.path("invites.json") }

// IssuedPath is the CA holder's record of the unexpired tickets it issued:
// their names and WireGuard keys are reserved (0600).
func (d StateDir) IssuedPath() string { return d.path("issued.json") }

// MembersPath is the persisted member table (owned by discovery).
func (d StateDir) MembersPath() string { return d.path("members.json") }

// ConfigPath is the optional config file; flags win over it.
func (d StateDir) ConfigPath() string { return d.path("meshnode.toml") }

// NKeyPath is the node's NATS user seed for local clients (0600).
func (d StateDir) NKeyPath() string { return d.path("nats-user.nk") }

// APISocketPath is the daemon's local API unix socket.
func (d StateDir) APISocketPath() string { return d.path("api.sock") }

// NATSDir is the embedded NATS server's JetStream store.
func (d StateDir) NATSDir() string { return d.path("nats") }

// Ensure creates the directory (0700) if it does not exist, and tightens
// an existing one to 0700: it holds the seed and the CA key, and a
// directory others can write lets them plant files (a seed we would then
// reuse, a link where a secret is about to be written). A directory owned
// by another user is refused: it is not ours to tighten or to trust.
func (d StateDir) Ensure() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	fi, err := os.Stat(string(d))
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s: not a directory", d)
	}
	if err := checkOwner(string(d), fi); err != nil {
		return fmt.Errorf("state directory %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(string(d), 0o700); err != nil {
			return fmt.Errorf("state directory %s: tighten to 0700: %w", d, err)
		}
	}
	return nil
}

// HasIdentity reports whether the directory already holds a seed.
func (d StateDir) HasIdentity() bool {
	_, err := os.Lstat(d.SeedPath())
	return err == nil
}

// Member is everything an enrolled node loads from its state directory.
type Member struct {
	ID          *Identity
	Trust       *Trust
	Ticket      *Ticket
	Cert        *NodeCert
	RouteSecret string
	CA          *CA // nil unless this node is an admin holding the CA key
}

// Enrollment is what an admitting node hands a newcomer (and what init
// produces for the first node): everything but the seed.
type Enrollment struct {
	CACertPEM   []byte
	Ticket      []byte
	NodeCertPEM []byte
	RouteSecret string
}

// NewRouteSecret returns a fresh mesh-wide NATS route secret.
func NewRouteSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Expires is when the first of the ticket and the node certificate runs
// out: the membership's end unless it is renewed.
func (m *Member) Expires() time.Time {
	if m.Cert.Cert.NotAfter.Before(m.Ticket.NotAfter) {
		return m.Cert.Cert.NotAfter
	}
	return m.Ticket.NotAfter
}

// Expired reports whether the ticket or the node certificate ran out at
// now: the node can then only renew (members refuse its meta and routes).
func (m *Member) Expired(now time.Time) bool {
	return m.Ticket.Expired(now) || now.After(m.Cert.Cert.NotAfter)
}

// SaveEnrollment verifies an enrollment for id and writes it. It refuses to
// replace an existing ticket: joining twice is an error, not a reset.
func (d StateDir) SaveEnrollment(id *Identity, e *Enrollment, now time.Time) (*Member, error) {
	m, err := checkEnrollment(id, e, now)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(d.TicketPath()); err == nil {
		return nil, fmt.Errorf("%s already exists: this state directory is already enrolled", d.TicketPath())
	}
	if err := WriteFileAtomic(d.CACertPath(), e.CACertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(d.NodeCertPath(), e.NodeCertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(d.RouteSecretPath(), []byte(e.RouteSecret+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(d.NKeyPath(), append(id.NKeySeedText(), '\n'), 0o600); err != nil {
		return nil, err
	}
	// The ticket is written last: its presence means "enrolled".
	if err := writeFileExclusive(d.TicketPath(), e.Ticket, 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

func checkEnrollment(id *Identity, e *Enrollment, now time.Time) (*Member, error) {
	return checkEnrollmentAt(id, e, now, false)
}

// checkEnrollmentAt is checkEnrollment that, with allowExpired, accepts a
// ticket and certificate whose time ran out (still CA-signed and this
// identity's).
func checkEnrollmentAt(id *Identity, e *Enrollment, now time.Time, allowExpired bool) (*Member, error) {
	trust, err := ParseTrust(e.CACertPEM)
	if err != nil {
		return nil, fmt.Errorf("enrollment: %w", err)
	}
	t, err := ParseTicket(e.Ticket)
	if err != nil {
		return nil, fmt.Errorf("enrollment: %w", err)
	}
	check, parseCert := id.CheckOwn, ParseNodeCert
	if allowExpired {
		check = func(t *Ticket, trust *Trust, now time.Time) error {
			if err := id.CheckOwnSignature(t, trust); err != nil {
				return err
			}
			if now.Add(ClockSkew).Before(t.NotBefore) {
				return fmt.Errorf("ticket for %q: not valid before %s", t.Name, t.NotBefore.UTC().Format(time.RFC3339))
			}
			return nil
		}
		parseCert = ParseNodeCertExpired
	}
	if err := check(t, trust, now); err != nil {
		return nil, fmt.Errorf("enrollment: %w", err)
	}
	nc, err := parseCert(e.NodeCertPEM, trust, now)
	if err != nil {
		return nil, fmt.Errorf("enrollment: %w", err)
	}
	if nc.Node() != id.Public() {
		return nil, errors.New("enrollment: node certificate names another identity")
	}
	if len(e.RouteSecret) < 32 || strings.ContainsAny(e.RouteSecret, " \t\r\n") {
		return nil, errors.New("enrollment: route secret missing or too short")
	}
	return &Member{ID: id, Trust: trust, Ticket: t, Cert: nc, RouteSecret: e.RouteSecret}, nil
}

// LoadMember loads an enrolled node's identity, trust, ticket, certificate
// and route secret, plus the CA when its key is present. Every missing or
// bad file is an error naming it.
//
// A ticket or certificate that has expired is loaded all the same (check
// Member.Expired): a node that was off across its expiry must still start
// so that it can renew. Everything else about them must verify.
func (d StateDir) LoadMember(now time.Time) (*Member, error) {
	seed, err := LoadSeed(d.SeedPath())
	if err != nil {
		return nil, err
	}
	id := FromSeed(seed)
	caPEM, err := os.ReadFile(d.CACertPath())
	if err != nil {
		return nil, fmt.Errorf("not enrolled? %w", err)
	}
	tb, err := os.ReadFile(d.TicketPath())
	if err != nil {
		return nil, fmt.Errorf("not enrolled? %w", err)
	}
	certPEM, err := os.ReadFile(d.NodeCertPath())
	if err != nil {
		return nil, fmt.Errorf("not enrolled? %w", err)
	}
	secret, err := readSecret(d.RouteSecretPath())
	if err != nil {
		return nil, err
	}
	m, err := checkEnrollmentAt(id, &Enrollment{CACertPEM: caPEM, Ticket: tb, NodeCertPEM: certPEM, RouteSecret: secret}, now, true)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", d, err)
	}
	ca, err := LoadCA(d.CAKeyPath(), d.CACertPath())
	switch {
	case err == nil:
		m.CA = ca
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}
	return m, nil
}

func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("route secret: %w", err)
	}
	if err := checkPrivate(path, fi); err != nil {
		return "", fmt.Errorf("route secret %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("route secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SaveRenewal verifies a renewed ticket and node certificate for m (same
// CA, same identity, same name) and replaces the stored ones atomically,
// certificate first: a crash in between leaves a new certificate with the
// old ticket, both valid. It returns the member with the new credentials;
// m is not changed.
func (d StateDir) SaveRenewal(m *Member, ticket, certPEM []byte, now time.Time) (*Member, error) {
	e := &Enrollment{CACertPEM: m.Trust.PEM, Ticket: ticket, NodeCertPEM: certPEM, RouteSecret: m.RouteSecret}
	nm, err := checkEnrollment(m.ID, e, now)
	if err != nil {
		return nil, fmt.Errorf("renewal: %w", err)
	}
	if nm.Ticket.Name != m.Ticket.Name {
		return nil, fmt.Errorf("renewal: ticket names %q, this node is %q", nm.Ticket.Name, m.Ticket.Name)
	}
	if err := WriteFileAtomic(d.NodeCertPath(), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("renewal: %w", err)
	}
	if err := WriteFileAtomic(d.TicketPath(), ticket, 0o644); err != nil {
		return nil, fmt.Errorf("renewal: %w", err)
	}
	nm.CA = m.CA
	return nm, nil
}

// InitMesh creates a new mesh in an empty state directory: seed, CA, route
// secret, and this node's own admin ticket (a core member: the first of
// the core set, see RoleCore) and certificate, valid for
// validity (the mesh's member validity; 0 means TicketValidity). It
// refuses a directory that already holds an identity.
func (d StateDir) InitMesh(mesh, name string, roles Roles, validity time.Duration, now time.Time) (*Member, error) {
	if err := ValidateName(mesh); err != nil {
		return nil, fmt.Errorf("--mesh: %w", err)
	}
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	if err := CheckMemberValidity(validity); err != nil {
		return nil, fmt.Errorf("--member-validity: %w", err)
	}
	if err := d.Ensure(); err != nil {
		return nil, err
	}
	if d.HasIdentity() {
		return nil, fmt.Errorf("%s already exists: refusing to create a second identity in %s", d.SeedPath(), d)
	}
	seed, err := CreateSeed(d.SeedPath())
	if err != nil {
		return nil, err
	}
	id := FromSeed(seed)
	ca, err := NewCA(mesh, now)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(d.CAKeyPath(), d.CACertPath()); err != nil {
		return nil, err
	}
	e, err := ca.EnrollFor(name, id.Public(), id.WireGuardPublic(), roles|RoleAdmin|RoleCore, now, validity)
	if err != nil {
		return nil, err
	}
	if e.RouteSecret, err = NewRouteSecret(); err != nil {
		return nil, err
	}
	m, err := d.SaveEnrollment(id, e, now)
	if err != nil {
		return nil, err
	}
	m.CA = ca
	return m, nil
}

// TicketValidity is how long an issued ticket is valid; members renew
// before it runs out.
const TicketValidity = NodeCertValidity

// MinMemberValidity is the shortest member validity a mesh may have: short
// enough for tests to watch renewals, long enough that a node renewing at
// two thirds of it is not renewing all the time.
const MinMemberValidity = time.Minute

// CheckMemberValidity refuses a member validity below MinMemberValidity
// (0 is allowed: it means TicketValidity).
func CheckMemberValidity(v time.Duration) error {
	if v != 0 && v < MinMemberValidity {
		return fmt.Errorf("member validity %s: want at least %s", v, MinMemberValidity)
	}
	return nil
}

// Enroll issues the ticket and certificate for a newcomer, valid for
// TicketValidity. The route secret is left for the caller, who holds it.
func (ca *CA) Enroll(name string, node NodePublic, wg WireGuardPublic, roles Roles, now time.Time) (*Enrollment, error) {
	return ca.EnrollFor(name, node, wg, roles, now, 0)
}

// EnrollFor is Enroll with the mesh's member validity (0: TicketValidity).
// The ticket and the certificate get the same lifetime, so that a node
// renews both at once.
func (ca *CA) EnrollFor(name string, node NodePublic, wg WireGuardPublic, roles Roles, now time.Time, validity time.Duration) (*Enrollment, error) {
	if validity == 0 {
		validity = TicketValidity
	}
	if err := CheckMemberValidity(validity); err != nil {
		return nil, err
	}
	t, err := ca.IssueTicket(name, node, wg, roles, now, validity)
	if err != nil {
		return nil, err
	}
	nc, err := ca.IssueNodeCert(name, node, now, validity)
	if err != nil {
		return nil, err
	}
	return &Enrollment{CACertPEM: ca.PEM, Ticket: t.Marshal(), NodeCertPEM: nc.PEM}, nil
}
