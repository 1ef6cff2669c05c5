package kmod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseModinfo(t *testing.T) {
	raw := []byte("license=GPL\x00softdep=pre: crc32c post: foo\x00depends=jbd2,mbcache,crc16\x00alias=fs-ext4\x00name=ext4\x00\x00")
	in := ParseModinfo(raw)
	if in.Name != "ext4" || strings.Join(in.Depends, ",") != "crc16,jbd2,mbcache" && strings.Join(in.Depends, ",") != "jbd2,mbcache,crc16" ||
		strings.Join(in.PreDeps, ",") != "crc32c" || len(in.Aliases) != 1 {
		t.Fatalf("%+v", in)
	}
	if in := ParseModinfo([]byte("depends=\x00name=tun")); len(in.Depends) != 0 || in.Name != "tun" {
		t.Fatalf("empty depends: %+v", in)
	}
}

func TestOrder(t *testing.T) {
	s := NewSet([]Info{
		{Name: "ext4", Depends: []string{"jbd2", "mbcache", "crc16"}, PreDeps: []string{"crc32c"}},
		{Name: "jbd2"},
		{Name: "mbcache"},
		{Name: "crc16"},
		{Name: "crc32c_generic", Aliases: []string{"crc32c", "crypto-crc32c"}},
		{Name: "virtio_net", Depends: []string{"net_failover", "virtio"}},
		{Name: "net_failover", Depends: []string{"failover"}},
		{Name: "failover"},
		{Name: "virtio"},
		{Name: "loop1", Depends: []string{"loop2"}},
		{Name: "loop2", Depends: []string{"loop1"}},
	})
	got, err := s.Order([]string{"virtio-net", "ext4", "efivarfs"}, map[string]bool{"efivarfs": true})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, n := range got {
		if _, dup := pos[n]; dup {
			t.Fatalf("%s twice in %v", n, got)
		}
		pos[n] = i
	}
	for _, e := range [][2]string{{"jbd2", "ext4"}, {"crc32c_generic", "ext4"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}, {"virtio", "virtio_net"}} {
		a, aok := pos[e[0]]
		b, bok := pos[e[1]]
		if !aok || !bok || a > b {
			t.Errorf("%s must load before %s: %v", e[0], e[1], got)
		}
	}
	if len(got) != 9 {
		t.Errorf("want 9 modules, got %v", got)
	}
	if _, err := s.Order([]string{"nosuch"}, nil); err == nil {
		t.Error("missing module accepted")
	}
	if _, err := s.Order([]string{"loop1"}, nil); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
}

// TestSelectDebian runs against an unpacked Debian kernel when the builder's
// cache has one (MESHNODE_KERNEL_MODULES=/path/lib/modules/<release>).
func TestSelectDebian(t *testing.T) {
	dir := os.Getenv("MESHNODE_KERNEL_MODULES")
	if dir == "" {
		t.Skip("MESHNODE_KERNEL_MODULES not set (the image build test covers this)")
	}
	builtin := map[string]bool{}
	b, _ := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	for _, l := range strings.Fields(string(b)) {
		builtin[Name(l)] = true
	}
	mods, err := Select(dir, []string{"tun", "virtio_net", "ext4", "vfat"}, builtin)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		t.Logf("%s %s %d", m.Name, m.File, len(m.Data))
	}
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("depends=a,b\x00softdep=pre: c post: d\x00name=x\x00alias=y"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := ParseModinfo(raw)
		for _, d := range in.Depends {
			if d == "" || strings.Contains(d, ",") {
				t.Fatalf("bad dependency %q", d)
			}
		}
	})
}
