// Command etcd is the etcd server of the sandbox control plane, the same entry point as
// upstream's etcd binary (go.etcd.io/etcd/server/v3/etcdmain).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
