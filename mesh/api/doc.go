// Package api is the local API of a running meshnode, as its clients see
// it: the status and request types on the wire and a Client that dials the
// daemon's unix socket (<state>/api.sock). The CLI, the lab and the
// benchmarks import it without importing mesh, so it depends on identity
// (for typed keys and roles) and the standard library only; mesh serves it.
package api
