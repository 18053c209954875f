// skynet: a tree of goroutines of fan-out 10 whose n leaves send their number (0..n-1) up over
// unbuffered channels; each inner goroutine sums its 10 children and sends the sum up. With
// n = 1,000,000 that is 1,111,111 goroutines and the sum 499999500000. Result: ms.
// Twin: bench/c/skynet.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

const fanout = 10

func skynet(out chan<- int, num, size int) {
	if size == 1 {
		out <- num
		return
	}
	results := make(chan int)
	childSize := size / fanout
	for i := 0; i < fanout; i++ {
		go skynet(results, num+i*childSize, childSize)
	}
	sum := 0
	for i := 0; i < fanout; i++ {
		sum += <-results
	}
	out <- sum
}

func main() {
	n := harness.Size(1000000)
	for s := n; s > 1; s /= fanout {
		if s%fanout != 0 {
			harness.Fail("skynet: size %d is not a power of %d", n, fanout)
		}
	}
	harness.WarmUp()
	t0 := time.Now()
	root := make(chan int)
	go skynet(root, 0, n)
	sum := <-root
	elapsed := time.Since(t0)
	if sum != n*(n-1)/2 {
		harness.Fail("skynet: sum %d, want %d", sum, n*(n-1)/2)
	}
	harness.Result("skynet", n, float64(elapsed.Nanoseconds())/1e6, "ms")
}
