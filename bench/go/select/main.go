// select: one receiver selects over 4 unbuffered channels, each fed by its own sender, n receives
// in all (n/4 per channel). Result: ns per receive. Twin: bench/c/select.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

const senders = 4

func main() {
	n := harness.Size(4000000)
	if n%senders != 0 {
		harness.Fail("select: size %d is not a multiple of %d", n, senders)
	}
	perSender := n / senders
	harness.WarmUp()
	var chans [senders]chan int
	for i := range chans {
		chans[i] = make(chan int)
	}
	var counts, sums [senders]int
	t0 := time.Now()
	for _, c := range chans {
		go func(c chan int) {
			for i := 0; i < perSender; i++ {
				c <- i
			}
		}(c)
	}
	for r := 0; r < n; r++ {
		var k, v int
		select {
		case v = <-chans[0]:
			k = 0
		case v = <-chans[1]:
			k = 1
		case v = <-chans[2]:
			k = 2
		case v = <-chans[3]:
			k = 3
		}
		counts[k]++
		sums[k] += v
	}
	elapsed := time.Since(t0)
	for i := 0; i < senders; i++ {
		if counts[i] != perSender || sums[i] != perSender*(perSender-1)/2 {
			harness.Fail("select: channel %d gave %d items summing to %d, want %d and %d",
				i, counts[i], sums[i], perSender, perSender*(perSender-1)/2)
		}
	}
	harness.Result("select", n, float64(elapsed.Nanoseconds())/float64(n), "ns/receive")
}
