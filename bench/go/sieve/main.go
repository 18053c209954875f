// sieve: the concurrent prime sieve of the Go tour: a generator sends 2, 3, 4, ... and each prime
// found adds a filter goroutine to a daisy chain of unbuffered channels. Runs until the n-th prime
// (the 5,000th is 48611). The chain is left blocked when the program ends. Result: ms.
// Twin: bench/c/sieve.c.
package main

import (
	"time"

	"hoarebench/internal/harness"
)

func generate(out chan<- int) {
	for i := 2; ; i++ {
		out <- i
	}
}

func filter(in <-chan int, out chan<- int, prime int) {
	for {
		i := <-in
		if i%prime != 0 {
			out <- i
		}
	}
}

// nthPrime finds the n-th prime by trial division, to check the chain's answer.
func nthPrime(n int) int {
	found := 0
	for c := 2; ; c++ {
		prime := true
		for d := 2; d*d <= c; d++ {
			if c%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			found++
			if found == n {
				return c
			}
		}
	}
}

func main() {
	n := harness.Size(5000)
	harness.WarmUp()
	t0 := time.Now()
	ch := make(chan int)
	go generate(ch)
	prime := 0
	for i := 0; i < n; i++ {
		prime = <-ch
		next := make(chan int)
		go filter(ch, next, prime)
		ch = next
	}
	elapsed := time.Since(t0)
	if want := nthPrime(n); prime != want {
		harness.Fail("sieve: prime number %d is %d, want %d", n, prime, want)
	}
	harness.Result("sieve", n, float64(elapsed.Nanoseconds())/1e6, "ms")
}
