// Package image is the home of the flashable appliance image: a GPT disk with
// an ESP (systemd-boot, two A/B slots each holding a Debian kernel and an
// initramfs whose /init is the static meshnode binary, and the first-boot
// config) and an ext4 partition for the node's persistent state.
//
// Subpackages:
//   - config: the first-boot config.toml schema and meshnode.* kernel arguments
//   - kernel: fetching and verifying the Debian kernel package
//   - kmod: module metadata (.modinfo), dependency order, decompression
//   - initramfs: the reproducible newc cpio + gzip archive
//   - disk: the GPT layout, the ESP's contents, editing an image's ESP
//   - build: the whole builder and its manifest
//   - boot: what meshnode does when it runs as PID 1
package image
