// mpmc: 4 producers and 4 consumers move n ints in all through one channel of capacity 128; the
// main goroutine closes it once every producer is done. Result: ns per item. Twin: bench/c/mpmc.c.
package main

import (
	"sync"
	"time"

	"hoarebench/internal/harness"
)

const producers, consumers = 4, 4

func main() {
	n := harness.Size(10000000)
	harness.WarmUp()
	ch := make(chan int, 128)
	var counts, sums [consumers]int
	var producersDone, consumersDone sync.WaitGroup
	t0 := time.Now()
	consumersDone.Add(consumers)
	for id := 0; id < consumers; id++ {
		go func(id int) {
			count, sum := 0, 0
			for v := range ch {
				count++
				sum += v
			}
			counts[id], sums[id] = count, sum
			consumersDone.Done()
		}(id)
	}
	producersDone.Add(producers)
	for id := 0; id < producers; id++ {
		go func(id int) {
			// producer id sends the values i with i % producers == id
			for i := id; i < n; i += producers {
				ch <- i
			}
			producersDone.Done()
		}(id)
	}
	producersDone.Wait()
	close(ch)
	consumersDone.Wait()
	elapsed := time.Since(t0)
	count, sum := 0, 0
	for i := 0; i < consumers; i++ {
		count += counts[i]
		sum += sums[i]
	}
	if count != n || sum != n*(n-1)/2 {
		harness.Fail("mpmc: received %d items summing to %d, want %d and %d", count, sum, n, n*(n-1)/2)
	}
	harness.Result("mpmc", n, float64(elapsed.Nanoseconds())/float64(n), "ns/item")
}
