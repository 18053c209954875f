// fileread: 256 goroutines read a file of n MiB together, each its 1/256 share in 64 KiB ReadAt
// calls on one os.File. os.Args[2] "cold": the file's pages are dropped from the cache first
// (fadvise DONTNEED; the file is fsync'ed); "warm": the file is read once untimed.
// Result: ms for the whole file. Twin: bench/c/fileread.c.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hoarebench/internal/harness"
)

const (
	readers = 256
	chunk   = 64 * 1024
)

func main() {
	mib := harness.Size(256)
	cold := len(os.Args) < 3 || os.Args[2] != "warm"
	path := fmt.Sprintf("%s/hoare_fileread_go_%d", os.TempDir(), os.Getpid())
	makeFile(path, mib)
	defer os.Remove(path)
	harness.WarmUp()
	f, err := os.Open(path)
	if err != nil {
		harness.Fail("open: %v", err)
	}
	if cold {
		const fadvDontneed = 4
		syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0)
	} else {
		buf := make([]byte, chunk)
		for off := int64(0); off < int64(mib)<<20; off += chunk {
			f.ReadAt(buf, off)
		}
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	share := int64(mib) << 20 / readers
	t0 := time.Now()
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(start int64) {
			defer wg.Done()
			buf := make([]byte, chunk)
			for off := start; off < start+share; off += chunk {
				want := start + share - off
				if want > chunk {
					want = chunk
				}
				n, err := f.ReadAt(buf[:want], off)
				if err != nil || int64(n) != want || binary.LittleEndian.Uint64(buf) != uint64(off) {
					bad.Add(1)
				}
			}
		}(int64(i) * share)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	f.Close()
	if bad.Load() != 0 {
		harness.Fail("fileread: %d chunks wrong", bad.Load())
	}
	name := "fileread-warm"
	if cold {
		name = "fileread-cold"
	}
	harness.Result(name, mib, float64(elapsed.Nanoseconds())/1e6, "ms")
}

func makeFile(path string, mib int) {
	f, err := os.Create(path)
	if err != nil {
		harness.Fail("create: %v", err)
	}
	block := make([]byte, chunk)
	for off := uint64(0); off < uint64(mib)<<20; off += chunk {
		for i := 0; i < chunk/8; i++ {
			binary.LittleEndian.PutUint64(block[i*8:], off+uint64(i)*8)
		}
		if _, err := f.Write(block); err != nil {
			harness.Fail("write: %v", err)
		}
	}
	if err := f.Sync(); err != nil {
		harness.Fail("fsync: %v", err)
	}
	f.Close()
}
