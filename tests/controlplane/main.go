// Command controlplane is the local Kubernetes hubguard's tests run against: embedded etcd and
// the upstream kube-apiserver in one process, and the upstream kubectl, kubelet, kube-scheduler
// and kube-controller-manager as subcommands of the same binary (they share one compile and link).
//
//	controlplane serve --dir DIR [--port N] [--address IP]   start etcd + kube-apiserver
//	controlplane kubectl ARGS...                 upstream kubectl (also when invoked as "kubectl")
//	controlplane kubelet ARGS...                 upstream kubelet
//	controlplane kube-scheduler ARGS...          upstream kube-scheduler
//	controlplane kube-controller-manager ARGS... upstream kube-controller-manager
//	controlplane kube-proxy ARGS...              upstream kube-proxy (Services' cluster IPs on the node)
//
// serve writes into DIR: ca.crt, admin.kubeconfig, and "ready" (the server URL) once /readyz
// answers; with --node NAME also the credentials of a node's components (NAME.kubeconfig for
// its kubelet, scheduler.kubeconfig, controller-manager.kubeconfig, kube-proxy.kubeconfig,
// sa.key, ca.key). It stops on SIGTERM or SIGINT. Without a node pods are stored, never run,
// which is all admission needs.
// Started again on a DIR it has served before, it keeps the certificates, credentials and etcd
// data it finds there: an API server restart, which the components ride through.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane serve --dir DIR [--port N] [--address IP] [--node NAME] | controlplane {kubectl,kubelet,kube-scheduler,kube-controller-manager,kube-proxy} ARGS...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "kubelet":
		os.Exit(runCommand(kubelet.NewKubeletCommand(context.Background()), os.Args[2:]))
	case "kube-scheduler":
		os.Exit(runCommand(scheduler.NewSchedulerCommand(), os.Args[2:]))
	case "kube-controller-manager":
		os.Exit(runCommand(controllermanager.NewControllerManagerCommand(), os.Args[2:]))
	case "kube-proxy":
		os.Exit(runCommand(proxy.NewProxyCommand(), os.Args[2:]))
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane:", err)
			os.Exit(1)
		}
	case "kubectl":
		os.Exit(runKubectl(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown subcommand %q\n", os.Args[1])
		os.Exit(2)
	}
}

func runKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
	return 0
}

func runCommand(command *cobra.Command, args []string) int {
	command.SetArgs(args)
	return cli.Run(command)
}

func serve(args []string) error {
	flags := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := flags.String("dir", "", "state directory (certificates, etcd data, kubeconfig)")
	port := flags.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 picks a free one)")
	extra := flags.String("apiserver-args", "", "extra kube-apiserver flags, space-separated")
	address := flags.String("address", "127.0.0.1", "address kube-apiserver binds to and advertises")
	node := flags.String("node", "", "also write the credentials of this node's kubelet, and of a scheduler and a controller-manager")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	apiPort := *port
	if apiPort == 0 {
		apiPort = freePort()
	}
	// A restart: the same CA, credentials and etcd data, so everything that knew the cluster
	// before keeps working.
	_, statErr := os.Stat(filepath.Join(*dir, "admin.kubeconfig"))
	restart := statErr == nil
	_ = os.Remove(filepath.Join(*dir, "ready"))
	var pki pkiFiles
	var err error
	if restart {
		pki = pkiPaths(*dir)
	} else if pki, err = writePKI(*dir, *address); err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	etcd, etcdURL, err := startEtcd(filepath.Join(*dir, "etcd"))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	server := fmt.Sprintf("https://%s", net.JoinHostPort(*address, fmt.Sprint(apiPort)))
	if restart && *port == 0 {
		return fmt.Errorf("restarting on %s needs the --port it served on before", *dir)
	}
	if restart {
		// Credentials are kept as they are.
	} else if err := writeKubeconfig(filepath.Join(*dir, "admin.kubeconfig"), server, pki.caCert, pki.adminCert, pki.adminKey); err != nil {
		return err
	}
	if *node != "" && !restart {
		if err := writeComponentCredentials(*dir, server, *node, pki); err != nil {
			return fmt.Errorf("writing the node's credentials: %w", err)
		}
	}
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + *address,
		"--advertise-address=" + *address,
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(*dir, "apiserver"),
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--client-ca-file=" + pki.caCert,
		"--kubelet-client-certificate=" + pki.kubeletClientCert,
		"--kubelet-client-key=" + pki.kubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki.saKey,
		"--service-account-signing-key-file=" + pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// Kubelets act as their node (the Node authorizer), as in kubeadm's clusters.
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		// Privileged pods must reach the webhooks under test instead of being refused first.
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	}
	if *extra != "" {
		for _, f := range strings.Fields(*extra) {
			apiArgs = append(apiArgs, f)
		}
	}
	go announceWhenReady(*dir, server, pki)

	command := apiserver.NewAPIServerCommand()
	command.SetArgs(apiArgs)
	if code := cli.Run(command); code != 0 {
		return fmt.Errorf("kube-apiserver exited with code %d", code)
	}
	return nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	// Test state is thrown away; fsync would only make every create slower for all runs alike.
	cfg.UnsafeNoFsync = true
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort()))
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort()))
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60s")
	}
	return e, client.String(), nil
}

type pkiFiles struct {
	caCert, caKey, servingCert, servingKey, adminCert, adminKey, saKey string
	kubeletClientCert, kubeletClientKey                                string
	// issue signs a client certificate for a component of the cluster.
	issue func(cn string, orgs []string, certPath, keyPath string) error
}

func pkiPaths(dir string) pkiFiles {
	return pkiFiles{
		caCert:            filepath.Join(dir, "ca.crt"),
		caKey:             filepath.Join(dir, "ca.key"),
		kubeletClientCert: filepath.Join(dir, "apiserver-kubelet-client.crt"),
		kubeletClientKey:  filepath.Join(dir, "apiserver-kubelet-client.key"),
		servingCert:       filepath.Join(dir, "apiserver.crt"),
		servingKey:        filepath.Join(dir, "apiserver.key"),
		adminCert:         filepath.Join(dir, "admin.crt"),
		adminKey:          filepath.Join(dir, "admin.key"),
		saKey:             filepath.Join(dir, "sa.key"),
	}
}

func writePKI(dir, address string) (pkiFiles, error) {
	p := pkiPaths(dir)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hubguard-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(p.caCert, "CERTIFICATE", caDER); err != nil {
		return p, err
	}
	if err := writeKey(p.caKey, caKey); err != nil {
		return p, err
	}
	leaf := func(serial int64, cn string, orgs []string, usage x509.ExtKeyUsage, certPath, keyPath string) error {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn, Organization: orgs},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1"), net.ParseIP(address)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return err
		}
		return writeKey(keyPath, key)
	}
	if err := leaf(2, "kube-apiserver", nil, x509.ExtKeyUsageServerAuth, p.servingCert, p.servingKey); err != nil {
		return p, err
	}
	if err := leaf(3, "hubguard-test-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, p.adminCert, p.adminKey); err != nil {
		return p, err
	}
	if err := leaf(4, "kube-apiserver-kubelet-client", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, p.kubeletClientCert, p.kubeletClientKey); err != nil {
		return p, err
	}
	serial := int64(100)
	p.issue = func(cn string, orgs []string, certPath, keyPath string) error {
		serial++
		return leaf(serial, cn, orgs, x509.ExtKeyUsageClientAuth, certPath, keyPath)
	}
	saKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return p, writeKey(p.saKey, saKey)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

// writeComponentCredentials gives the node's kubelet, the scheduler and the controller-manager
// their own identities, as kubeadm does.
func writeComponentCredentials(dir, server, node string, p pkiFiles) error {
	components := []struct{ file, cn, org string }{
		{node, "system:node:" + node, "system:nodes"},
		{"scheduler", "system:kube-scheduler", ""},
		{"controller-manager", "system:kube-controller-manager", ""},
		// The user the default RBAC binds to system:node-proxier.
		{"kube-proxy", "system:kube-proxy", ""},
	}
	for _, c := range components {
		var orgs []string
		if c.org != "" {
			orgs = []string{c.org}
		}
		cert, key := filepath.Join(dir, c.file+".crt"), filepath.Join(dir, c.file+".key")
		if err := p.issue(c.cn, orgs, cert, key); err != nil {
			return err
		}
		if err := writeKubeconfig(filepath.Join(dir, c.file+".kubeconfig"), server, p.caCert, cert, key); err != nil {
			return err
		}
	}
	return nil
}

func writeKubeconfig(path, server, caCert, clientCert, clientKey string) error {
	read := func(f string) string {
		b, _ := os.ReadFile(f)
		return base64.StdEncoding.EncodeToString(b)
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`, server, read(caCert), read(clientCert), read(clientKey))
	return os.WriteFile(path, []byte(config), 0o600)
}

// announceWhenReady writes DIR/ready once the apiserver's /readyz answers 200 to the admin.
func announceWhenReady(dir, server string, p pkiFiles) {
	cert, err := tls.LoadX509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return
	}
	caPEM, _ := os.ReadFile(p.caCert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}},
	}
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				_ = os.WriteFile(filepath.Join(dir, "ready"), []byte(server+"\n"), 0o600)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
