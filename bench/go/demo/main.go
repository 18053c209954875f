// demo: the seed's demonstration as a benchmark: two goroutines, each counting to n without
// yielding, joined by a WaitGroup; the wall time. Result: ms. Twin: bench/c/demo.c.
package main

import (
	"sync"
	"time"

	"hoarebench/internal/harness"
)

var sums [2]uint64

func count(sum *uint64, n int, wg *sync.WaitGroup) {
	var x uint64
	for i := 0; i < n; i++ {
		x += uint64(i)
	}
	*sum = x
	wg.Done()
}

func main() {
	n := harness.Size(1500000000)
	harness.WarmUp()
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	go count(&sums[0], n, &wg)
	go count(&sums[1], n, &wg)
	wg.Wait()
	elapsed := time.Since(t0)
	want := uint64(n) * uint64(n-1) / 2
	if sums[0] != want || sums[1] != want {
		harness.Fail("demo: sums %d %d, want %d", sums[0], sums[1], want)
	}
	harness.Result("demo", n, float64(elapsed.Nanoseconds())/1e6, "ms")
}
