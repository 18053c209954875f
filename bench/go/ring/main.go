// ring: the thread-ring of the benchmarks game: 503 goroutines in a ring of unbuffered channels
// pass a token n times; the goroutine that receives 0 reports its number (n % 503 + 1) and the
// others stay blocked. Result: ns per pass. Twin: bench/c/ring.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

const ring = 503

func main() {
	n := harness.Size(10000000)
	harness.WarmUp()
	var links [ring]chan int // links[i] is the input of goroutine i+1
	for i := range links {
		links[i] = make(chan int)
	}
	done := make(chan int)
	t0 := time.Now()
	for i := 0; i < ring; i++ {
		go func(i int) {
			in, out := links[i], links[(i+1)%ring]
			for {
				token := <-in
				if token == 0 {
					done <- i + 1
					return
				}
				out <- token - 1
			}
		}(i)
	}
	links[0] <- n
	winner := <-done
	elapsed := time.Since(t0)
	if winner != n%ring+1 {
		harness.Fail("ring: goroutine %d got the last token, want %d", winner, n%ring+1)
	}
	harness.Result("ring", n, float64(elapsed.Nanoseconds())/float64(n), "ns/pass")
}
