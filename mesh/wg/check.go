package wg

// CheckPeers reports why Apply would refuse desired without touching any
// device: a zero or repeated key, a bad endpoint or keepalive, an invalid
// allowed IP, or one allowed IP given to two peers. Callers that build a
// peer set from input they do not control (mesh.NewPlan) test with it
// that one bad entry cannot make the whole set fail.
func CheckPeers(desired []Peer) error {
	_, err := normalize(desired)
	return err
}
