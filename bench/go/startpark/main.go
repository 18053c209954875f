// startpark: start n goroutines that each park on one channel; the time from the first start until
// all of them are parked, per goroutine. Then the channel is closed and all are joined (not timed).
// Result: ns per goroutine. Twin: bench/c/startpark.c.
package main

import (
	"sync"
	"time"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(100000)
	harness.WarmUp()
	gate := make(chan struct{})
	var started, finished sync.WaitGroup
	t0 := time.Now()
	started.Add(n)
	finished.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			if _, ok := <-gate; ok {
				harness.Fail("startpark: woke without the close")
			}
			finished.Done()
		}()
	}
	started.Wait()
	elapsed := time.Since(t0)
	close(gate)
	finished.Wait()
	harness.Result("startpark", n, float64(elapsed.Nanoseconds())/float64(n), "ns/goroutine")
}
