package decode_test

import (
	"encoding/hex"
	"fmt"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// A Parser decodes an IP packet into the tracker's Segment without
// allocating; one Parser is reused for every packet of a worker.
func Example() {
	syn, _ := hex.DecodeString("" +
		// IPv4: 198.18.1.2 -> 198.19.2.2, TCP, 40 bytes
		"45000028" + "00004000" + "40060000" + "c6120102" + "c6130202" +
		// TCP: 40000 -> 8080, seq 100, SYN, window 64240
		"9c401f90" + "00000064" + "00000000" + "5002faf0" + "00000000")
	p := decode.NewParser()
	var seg statetrack.Segment
	if err := p.Decode(syn, &seg); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(seg.Src, "->", seg.Dst, seg.Flags, "seq", seg.Seq, "len", seg.Len)
	// Output:
	// 198.18.1.2:40000 -> 198.19.2.2:8080 S seq 100 len 0
}
