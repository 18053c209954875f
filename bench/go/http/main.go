// http: the Go twin of examples/http_hello: an HTTP/1.1 keep-alive server on the address given as
// the first argument (127.0.0.1:PORT) that answers every request with "Hello, World!".
package main

import (
	"fmt"
	"net/http"
	"os"
)

var hello = []byte("Hello, World!")

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: http 127.0.0.1:PORT")
		os.Exit(2)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8") // as http_hello
		w.Write(hello)
	})
	if err := http.ListenAndServe(os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
