// mutex: 8 goroutines each add 1 to a shared counter under a mutex, n increments in all.
// Result: ns per increment. Twin: bench/c/mutex.c.
package main

import (
	"sync"
	"time"

	"hoarebench/internal/harness"
)

const workers = 8

func main() {
	n := harness.Size(10000000)
	if n%workers != 0 {
		harness.Fail("mutex: size %d is not a multiple of %d", n, workers)
	}
	perWorker := n / workers
	harness.WarmUp()
	var mu sync.Mutex
	counter := 0 // guarded by mu
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(workers)
	for i := 0; i < workers; i++ {
		go func() {
			for j := 0; j < perWorker; j++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if counter != n {
		harness.Fail("mutex: counter is %d, want %d", counter, n)
	}
	harness.Result("mutex", n, float64(elapsed.Nanoseconds())/float64(n), "ns/increment")
}
