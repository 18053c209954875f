// pingpong: n round trips of an int between two goroutines over two unbuffered channels; the echo
// goroutine answers v+1. Result: ns per round trip. Twin: bench/c/pingpong.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

func main() {
	n := harness.Size(1000000)
	harness.WarmUp()
	ping, pong := make(chan int), make(chan int)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
	}()
	for i := 0; i < n; i++ {
		ping <- i
		if v := <-pong; v != i+1 {
			harness.Fail("pingpong: sent %d, got back %d", i, v)
		}
	}
	elapsed := time.Since(t0)
	harness.Result("pingpong", n, float64(elapsed.Nanoseconds())/float64(n), "ns/roundtrip")
}
