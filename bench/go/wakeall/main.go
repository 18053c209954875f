// wakeall: n goroutines parked on one channel (started untimed), then one close: the time until
// all of them woke and finished, per goroutine. Each checks it woke by the close.
// Result: ns per goroutine. Twin: bench/c/wakeall.c.
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
	started.Add(n)
	finished.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			if _, ok := <-gate; ok {
				harness.Fail("wakeall: woke without the close")
			}
			finished.Done()
		}()
	}
	started.Wait()
	t0 := time.Now()
	close(gate)
	finished.Wait()
	elapsed := time.Since(t0)
	harness.Result("wakeall", n, float64(elapsed.Nanoseconds())/float64(n), "ns/goroutine")
}
