// yield: two goroutines each call runtime.Gosched n/2 times (on one processor they alternate).
// Result: ns per switch (per yield). Twin: bench/c/yield.c.
package main

import (
	"runtime"
	"sync"
	"time"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(10000000)
	if n%2 != 0 {
		harness.Fail("yield: size %d is odd", n)
	}
	perGoroutine := n / 2
	harness.WarmUp()
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; i < perGoroutine; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	harness.Result("yield", n, float64(elapsed.Nanoseconds())/float64(n), "ns/switch")
}
