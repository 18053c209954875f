// buffered: one producer sends 0..n-1 through a channel of capacity 1024 and closes it; one
// consumer receives until closed. Result: ns per item. Twin: bench/c/buffered.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(10000000)
	harness.WarmUp()
	ch := make(chan int, 1024)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	count, sum := 0, 0
	for v := range ch {
		count++
		sum += v
	}
	elapsed := time.Since(t0)
	if count != n || sum != n*(n-1)/2 {
		harness.Fail("buffered: received %d items summing to %d, want %d and %d", count, sum, n, n*(n-1)/2)
	}
	harness.Result("buffered", n, float64(elapsed.Nanoseconds())/float64(n), "ns/item")
}
