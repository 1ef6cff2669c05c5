package kernel

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolveMeta(t *testing.T) {
	for _, tc := range []struct{ dep, pkg, ver string }{
		{"linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64", "6.1.192-2"},
		{"initramfs-tools | linux-initramfs-tool, linux-image-6.12.48+deb13-amd64 (= 6.12.48-1)", "linux-image-6.12.48+deb13-amd64", "6.12.48-1"},
		{"linux-image-6.1.0-56-amd64", "linux-image-6.1.0-56-amd64", ""},
	} {
		p, v, err := ResolveMeta(tc.dep)
		if err != nil || p != tc.pkg || v != tc.ver {
			t.Errorf("ResolveMeta(%q) = %q %q %v", tc.dep, p, v, err)
		}
	}
	if _, _, err := ResolveMeta("firmware-linux-free"); err == nil {
		t.Error("no kernel accepted")
	}
}

func TestParseAptRecord(t *testing.T) {
	rec := "Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nDepends: kmod, linux-base (>= 4.3~)\nDescription: Linux 6.1\n long text\nFilename: pool/x.deb\nSHA256: abc\n\nPackage: other\nVersion: 9\n"
	p := parseAptRecord([]byte(rec))
	if p.Package != "linux-image-6.1.0-56-amd64" || p.Version != "6.1.192-2" || p.SHA256 != "abc" || p.Filename != "pool/x.deb" {
		t.Fatalf("%+v", p)
	}
}

func TestFromTree(t *testing.T) {
	dir := t.TempDir()
	rel := "6.1.0-56-amd64"
	for _, f := range []string{"boot/vmlinuz-" + rel, "lib/modules/" + rel + "/kernel/drivers/net/tun.ko"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lib/modules", rel, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\nkernel/fs/ext4/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := fromTree("debian", "p", "v", "s", dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != rel || !k.Builtin["virtio"] || !k.Builtin["ext4"] || k.Builtin["tun"] || filepath.Base(k.Vmlinuz) != "vmlinuz-"+rel {
		t.Fatalf("%+v", k)
	}
}
