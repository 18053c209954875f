// parked: n goroutines parked on one channel; the resident memory they cost, per goroutine (RSS
// delta / n, from /proc/self/statm). Then the channel is closed and all of them are joined.
// Result: bytes per goroutine. Twin: bench/c/parked.c (which also has a small-stack run).
package main

import (
	"sync"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(1000000)
	harness.WarmUp()
	gate := make(chan struct{})
	var started, finished sync.WaitGroup
	rss0 := harness.RSSBytes()
	started.Add(n)
	finished.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			if _, ok := <-gate; ok {
				harness.Fail("parked: woke without the close")
			}
			finished.Done()
		}()
	}
	started.Wait()
	rss1 := harness.RSSBytes()
	close(gate)
	finished.Wait()
	harness.Result("parked", n, float64(rss1-rss0)/float64(n), "bytes/goroutine")
}
