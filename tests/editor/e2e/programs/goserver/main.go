// The Go program of the editor tests: answers every request. "Run with cluster context" on
// deployment/blog mirrors the blog's requests to it; the tests' breakpoint is in answer.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func answer(w http.ResponseWriter, r *http.Request) {
	body := fmt.Sprintf("{\"from\": \"go\", \"path\": %q}\n", r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", answer)
	fmt.Println("go: listening on :" + port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Println("go:", err)
		os.Exit(1)
	}
}
