// Package harness holds the few helpers every Go twin shares; it mirrors bench/c/bench.h.
//
//   - os.Args[1], when given, is the workload size (the runner's quick mode passes small sizes).
//   - The result is one line: RESULT name=<workload> procs=<P> n=<size> value=<v> unit=<u>
//   - A wrong result prints "FAIL ..." and exits 1.
package harness

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
)

// Size returns the workload size: os.Args[1] if given, else the definition's size.
func Size(fullSize int) int {
	if len(os.Args) < 2 {
		return fullSize
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n <= 0 {
		Fail("bad size '%s'", os.Args[1])
	}
	return n
}

// Fail reports a wrong result and exits 1.
func Fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

// Result prints the result line.
func Result(name string, n int, value float64, unit string) {
	fmt.Printf("RESULT name=%s procs=%d n=%d value=%.6g unit=%s\n", name, runtime.GOMAXPROCS(0), n, value, unit)
}

// WarmUp starts and joins one goroutine before the clock starts, as the C side does to start its
// runtime.
func WarmUp() {
	var wg sync.WaitGroup
	wg.Add(1)
	go wg.Done()
	wg.Wait()
}

// RSSBytes is the resident set size of this process (/proc/self/statm, second field, in pages).
func RSSBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		Fail("cannot read /proc/self/statm: %v", err)
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		Fail("cannot parse /proc/self/statm: %v", err)
	}
	return resident * int64(os.Getpagesize())
}
