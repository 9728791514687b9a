package pewma_test

import (
	"fmt"

	"github.com/iotpipe/iotpipe/rulesql/pewma"
)

func ExampleState_Update() {
	p := pewma.DefaultParams() // alpha0 0.95, beta 0.5, T 30, threshold 0.002
	p.T = 5                    // a short training period for the example
	var s pewma.State
	for i, x := range []float64{20, 21, 20, 19, 20, 21, 20, 35, 20} {
		r := s.Update(p, x)
		if r.Anomaly {
			fmt.Printf("point %d = %v is an anomaly: band [%.2f, %.2f]\n", i, x, r.Lower, r.Upper)
		}
	}
	b, _ := s.MarshalBinary() // 24 bytes: store them per (thing, field)
	var restored pewma.State
	_ = restored.UnmarshalBinary(b)
	fmt.Println(restored == s, len(b))
	// Output:
	// point 7 = 35 is an anomaly: band [18.16, 22.00]
	// true 24
}
