// A statically linked Go test program: Go's own resolver (it reads /etc/resolv.conf itself)
// and Go's own dialer, with no libc. Usage: probe-go NAME URL, or probe-go --hostname
// (os.Hostname: Go reads /proc/sys/kernel/hostname, then asks uname)
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--hostname" {
		name, err := os.Hostname()
		if err != nil {
			fmt.Println("hostname error:", err)
			os.Exit(1)
		}
		fmt.Println("hostname:", name)
		return
	}
	addresses, err := net.LookupHost(os.Args[1])
	if err != nil {
		fmt.Println("lookup error:", err)
		os.Exit(1)
	}
	fmt.Println("lookup:", addresses)
	response, err := http.Get(os.Args[2])
	if err != nil {
		fmt.Println("get error:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(response.Body)
	fmt.Println("body:", string(body))
}
