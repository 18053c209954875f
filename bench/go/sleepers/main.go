// sleepers: n goroutines each sleep 10 ms, all started in one loop; the time from the first start
// until the last is done. Each checks that it slept at least 10 ms. Result: ms.
// Twin: bench/c/sleepers.c.
package main

import (
	"sync"
	"sync/atomic"
	"time"

	"hoarebench/internal/harness"
)

const nap = 10 * time.Millisecond

func main() {
	n := harness.Size(100000)
	harness.WarmUp()
	var wg sync.WaitGroup
	var early int64 // sleepers that woke before nap passed
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			start := time.Now()
			time.Sleep(nap)
			if time.Since(start) < nap {
				atomic.AddInt64(&early, 1)
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if early != 0 {
		harness.Fail("sleepers: %d goroutines woke before 10 ms", early)
	}
	harness.Result("sleepers", n, float64(elapsed.Nanoseconds())/1e6, "ms")
}
