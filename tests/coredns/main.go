// Command coredns is the test cluster's DNS: upstream CoreDNS built with only the plugins a
// cluster's DNS needs (the kubernetes plugin answering for Services and pods, health and
// readiness for the kubelet's probes, a cache), as the kube-system pod behind the kube-dns
// Service. Nothing is forwarded: the cluster has no way out, so names outside cluster.local
// get SERVFAIL at once instead of a timeout.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The order plugins handle a query in, as in upstream's plugin.cfg (a subset of it).
var directives = []string{
	"reload",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
