// Package nstest holds the root-only tests of mesh/wg: real TUN devices in
// network namespaces, driven by helper processes (this test binary re-run
// with NSTEST_HELPER set), checked with the real wg and ping tools. They
// live apart from mesh/wg so that package's in-process tests keep running
// under the race detector.
package nstest
