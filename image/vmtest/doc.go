// Package vmtest boots the built appliance image under qemu (q35, TCG,
// OVMF) and checks the boot path on its serial console. It holds only
// tests and the stub /init they use (stubinit).
package vmtest
