// spawn: start and join n goroutines that do nothing but mark one WaitGroup done.
// Result: ns per goroutine. Twin: bench/c/spawn.c.
package main

import (
	"sync"
	"time"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(1000000)
	harness.WarmUp()
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go wg.Done()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	harness.Result("spawn", n, float64(elapsed.Nanoseconds())/float64(n), "ns/goroutine")
}
