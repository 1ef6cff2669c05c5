package identity

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// A record list is how sets of signed records (revocations, phone tickets)
// are written to their files and carried in gossip push/pull:
//
//	magic | count u32 | count × (length u16 | record)
//
// The magic names the kind and its version. Decoding is strict: no
// trailing bytes, and a count the data cannot hold (each record takes at
// least its two length bytes) is refused before anything is allocated.

// marshalRecordList encodes records, each as marshal gives it, under magic.
func marshalRecordList[T any](magic string, list []T, marshal func(T) []byte) []byte {
	b := []byte(magic)
	b = binary.BigEndian.AppendUint32(b, uint32(len(list)))
	for _, r := range list {
		m := marshal(r)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// parseRecordList decodes a record list of at most max records with
// parse; what names the kind in errors.
func parseRecordList[T any](b []byte, magic, what string, max uint32, parse func([]byte) (T, error)) ([]T, error) {
	s := cryptobyte.String(b)
	var got []byte
	ok := s.ReadBytes(&got, len(magic))
	if ok && string(got) != magic {
		return nil, errors.New(what + ": bad magic or unknown version")
	}
	var n uint32
	if !ok || !s.ReadUint32(&n) {
		return nil, errors.New(what + ": truncated")
	}
	if n > max || int(n) > len(s)/2 {
		return nil, fmt.Errorf("%s: count %d does not fit the data", what, n)
	}
	out := make([]T, 0, n)
	for i := range n {
		var rec cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&rec) {
			return nil, fmt.Errorf("%s: record %d: truncated", what, i)
		}
		r, err := parse(rec)
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", what, i, err)
		}
		out = append(out, r)
	}
	if err := wireEnd(true, s); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
