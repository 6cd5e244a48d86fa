// Command interop-go is the Go peer of the interoperability suite (tests/interop).
//
//	interop-go server spiffe|tls CASES.json   listen once per case, print {"ports": {...}}, then one
//	                                          result line per connection until stdin closes
//	interop-go client spiffe|tls CASES.json   connect once per case, print one result line each
//
// On every connection the client sends "ping\n" and the server answers a line (OpenSSL s_server -rev
// answers "gnip"); any answer proves that the server accepted the client.
//
// "spiffe" is go-spiffe v2: x509svid.Load for the own SVID, x509bundle.Load for the trust bundle,
// tlsconfig.MTLSServerConfig/MTLSClientConfig (x509svid.ParseAndVerify underneath) with
// tlsconfig.AuthorizeID when a case names the peer's SPIFFE ID, else AuthorizeAny. "tls" is plain
// crypto/tls: RequireAndVerifyClientCert with ClientCAs on the server, RootCAs and ServerName on the
// client. Every handshake's outcome is judged by the side that runs it; the Python driver pairs the
// two sides' lines.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const timeout = 10 * time.Second

// Case is one side of one handshake, as the driver writes it.
type Case struct {
	ID         string `json:"id"`
	Cert       string `json:"cert"`
	Key        string `json:"key"`
	CA         string `json:"ca"`
	Authorize  string `json:"authorize"`
	Port       int    `json:"port"`
	ServerName string `json:"server_name"`
}

// Result is one line of output.
type Result struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Peer  string `json:"peer,omitempty"`
	Error string `json:"error,omitempty"`
	Stage string `json:"stage,omitempty"`
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(v any) {
	out.Lock()
	defer out.Unlock()
	if err := out.enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		os.Exit(2)
	}
}

func main() {
	if len(os.Args) != 4 || (os.Args[2] != "spiffe" && os.Args[2] != "tls") {
		fmt.Fprintln(os.Stderr, "usage: interop-go server|client spiffe|tls CASES.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cases []Case
	if err := json.Unmarshal(raw, &cases); err != nil {
		fmt.Fprintln(os.Stderr, "cases:", err)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		serve(cases, os.Args[2])
	case "client":
		for _, c := range cases {
			emit(dial(c, os.Args[2]))
		}
	default:
		fmt.Fprintln(os.Stderr, "mode must be server or client")
		os.Exit(2)
	}
}

func peerID(state tls.ConnectionState) string {
	if len(state.PeerCertificates) == 0 {
		return ""
	}
	for _, uri := range state.PeerCertificates[0].URIs {
		return uri.String()
	}
	return ""
}

func authorizer(id string) (tlsconfig.Authorizer, error) {
	if id == "" {
		return tlsconfig.AuthorizeAny(), nil
	}
	parsed, err := spiffeid.FromString(id)
	if err != nil {
		return nil, err
	}
	return tlsconfig.AuthorizeID(parsed), nil
}

func spiffeConfig(c Case, server bool) (*tls.Config, error) {
	svid, err := x509svid.Load(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("x509svid.Load: %w", err)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), c.CA)
	if err != nil {
		return nil, fmt.Errorf("x509bundle.Load: %w", err)
	}
	auth, err := authorizer(c.Authorize)
	if err != nil {
		return nil, err
	}
	if server {
		return tlsconfig.MTLSServerConfig(svid, bundle, auth), nil
	}
	return tlsconfig.MTLSClientConfig(svid, bundle, auth), nil
}

func tlsConfig(c Case, server bool) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls.LoadX509KeyPair: %w", err)
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate in the bundle")
	}
	config := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if server {
		config.ClientAuth = tls.RequireAndVerifyClientCert
		config.ClientCAs = pool
	} else {
		config.RootCAs = pool
		config.ServerName = c.ServerName
	}
	return config, nil
}

func config(c Case, verifier string, server bool) (*tls.Config, error) {
	if verifier == "spiffe" {
		return spiffeConfig(c, server)
	}
	return tlsConfig(c, server)
}

func serve(cases []Case, verifier string) {
	ports := map[string]int{}
	var listeners []net.Listener
	for _, c := range cases {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			os.Exit(2)
		}
		ports[c.ID] = listener.Addr().(*net.TCPAddr).Port
		listeners = append(listeners, listener)
	}
	emit(map[string]any{"ports": ports})
	for i, c := range cases {
		go accept(listeners[i], c, verifier)
	}
	// The driver closes stdin when every client has run.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func accept(listener net.Listener, c Case, verifier string) {
	conf, setupErr := config(c, verifier, true)
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		if setupErr != nil {
			_ = conn.Close()
			emit(Result{ID: c.ID, Error: setupErr.Error(), Stage: "setup"})
			continue
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(timeout))
			server := tls.Server(conn, conf)
			if err := server.Handshake(); err != nil {
				emit(Result{ID: c.ID, Error: err.Error(), Stage: "handshake"})
				return
			}
			peer := peerID(server.ConnectionState())
			if _, err := bufio.NewReader(server).ReadString('\n'); err != nil {
				emit(Result{ID: c.ID, Error: err.Error(), Stage: "read"})
				return
			}
			if _, err := fmt.Fprintf(server, "ok %s\n", peer); err != nil {
				emit(Result{ID: c.ID, Error: err.Error(), Stage: "write"})
				return
			}
			_ = server.Close()
			emit(Result{ID: c.ID, OK: true, Peer: peer})
		}()
	}
}

func dial(c Case, verifier string) Result {
	conf, err := config(c, verifier, false)
	if err != nil {
		return Result{ID: c.ID, Error: err.Error(), Stage: "setup"}
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), timeout)
	if err != nil {
		return Result{ID: c.ID, Error: err.Error(), Stage: "connect"}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	client := tls.Client(conn, conf)
	if err := client.Handshake(); err != nil {
		return Result{ID: c.ID, Error: err.Error(), Stage: "handshake"}
	}
	if _, err := io.WriteString(client, "ping\n"); err != nil {
		return Result{ID: c.ID, Error: err.Error(), Stage: "write"}
	}
	// In TLS 1.3 the server judges the client's certificate after the client's handshake is done:
	// only the server's first bytes prove that it accepted us.
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || strings.TrimSpace(line) == "" {
		if err == nil {
			err = fmt.Errorf("unexpected reply %q", line)
		}
		return Result{ID: c.ID, Error: err.Error(), Stage: "read"}
	}
	return Result{ID: c.ID, OK: true, Peer: peerID(client.ConnectionState())}
}
