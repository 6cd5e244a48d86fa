//! The rustls/webpki peer of mtls-operator's interoperability suite (tests/interop).
//!
//!   interop-rust server CASES.json   listen once per case, print {"ports": {...}}, then one
//!                                    result line per connection until stdin closes
//!   interop-rust client CASES.json   connect once per case, print one result line each
//!
//! Certificates and keys are read with rustls-pki-types' PEM parser; the server verifies clients
//! with rustls' `WebPkiClientVerifier` over the case's bundle, the client verifies the server
//! with webpki against the bundle and the case's DNS name. rustls has no authorizer by SPIFFE
//! ID (that is the application's job), so `authorize` is not used here.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize, Clone)]
struct Case {
    id: String,
    cert: String,
    key: String,
    ca: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    server_name: String,
}

#[derive(Serialize)]
struct Outcome {
    id: String,
    ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    stage: String,
}

impl Outcome {
    fn ok(id: &str) -> Self {
        Outcome { id: id.into(), ok: true, error: String::new(), stage: String::new() }
    }
    fn failed(id: &str, stage: &str, error: impl ToString) -> Self {
        Outcome { id: id.into(), ok: false, error: error.to_string(), stage: stage.into() }
    }
}

static OUT: Mutex<()> = Mutex::new(());

fn emit<T: Serialize>(value: &T) {
    let _guard = OUT.lock().unwrap();
    let mut stdout = io::stdout().lock();
    serde_json::to_writer(&mut stdout, value).expect("write result");
    stdout.write_all(b"\n").and_then(|_| stdout.flush()).expect("write result");
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn chain(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate"));
    }
    Ok(certs)
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{path}: {e}"))
}

fn roots(path: &str) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in chain(path)? {
        store.add(cert).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(Arc::new(store))
}

fn server_config(case: &Case) -> Result<Arc<ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&case.ca)?, provider())
        .build()
        .map_err(|e| e.to_string())?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(&case.cert)?, key(&case.key)?)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

fn client_config(case: &Case) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(&case.ca)?)
        .with_client_auth_cert(chain(&case.cert)?, key(&case.key)?)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

fn serve_one(config: Arc<ServerConfig>, id: &str, sock: TcpStream) -> Outcome {
    let _ = sock.set_read_timeout(Some(TIMEOUT));
    let _ = sock.set_write_timeout(Some(TIMEOUT));
    let conn = match ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => return Outcome::failed(id, "setup", e),
    };
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Outcome::failed(id, "handshake", e);
        }
    }
    let mut line = String::new();
    if let Err(e) = BufReader::new(&mut tls).read_line(&mut line) {
        return Outcome::failed(id, "read", e);
    }
    if let Err(e) = tls.write_all(b"ok\n").and_then(|_| tls.flush()) {
        return Outcome::failed(id, "write", e);
    }
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    Outcome::ok(id)
}

fn serve(cases: Vec<Case>) {
    let mut ports = BTreeMap::new();
    let mut listeners = Vec::new();
    for case in &cases {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        ports.insert(case.id.clone(), listener.local_addr().expect("address").port());
        listeners.push(listener);
    }
    emit(&serde_json::json!({ "ports": ports }));
    for (case, listener) in cases.into_iter().zip(listeners) {
        thread::spawn(move || {
            let config = server_config(&case);
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                match &config {
                    Err(e) => emit(&Outcome::failed(&case.id, "setup", e)),
                    Ok(config) => {
                        let (config, id) = (config.clone(), case.id.clone());
                        thread::spawn(move || emit(&serve_one(config, &id, sock)));
                    }
                }
            }
        });
    }
    // The driver closes stdin when every client has run.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
}

fn dial(case: &Case) -> Outcome {
    let config = match client_config(case) {
        Ok(config) => config,
        Err(e) => return Outcome::failed(&case.id, "setup", e),
    };
    let name = match ServerName::try_from(case.server_name.clone()) {
        Ok(name) => name,
        Err(e) => return Outcome::failed(&case.id, "setup", e),
    };
    let sock = match TcpStream::connect(("127.0.0.1", case.port)) {
        Ok(sock) => sock,
        Err(e) => return Outcome::failed(&case.id, "connect", e),
    };
    let _ = sock.set_read_timeout(Some(TIMEOUT));
    let _ = sock.set_write_timeout(Some(TIMEOUT));
    let conn = match ClientConnection::new(config, name) {
        Ok(conn) => conn,
        Err(e) => return Outcome::failed(&case.id, "setup", e),
    };
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Outcome::failed(&case.id, "handshake", e);
        }
    }
    if let Err(e) = tls.write_all(b"ping\n").and_then(|_| tls.flush()) {
        return Outcome::failed(&case.id, "write", e);
    }
    // In TLS 1.3 the server judges the client's certificate after the client's handshake is
    // done: only the server's reply proves that it accepted us.
    let mut line = String::new();
    match BufReader::new(&mut tls).read_line(&mut line) {
        Ok(_) if !line.trim().is_empty() => Outcome::ok(&case.id),
        Ok(_) => Outcome::failed(&case.id, "read", format!("unexpected reply {line:?} (connection closed)")),
        Err(e) => Outcome::failed(&case.id, "read", e),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || (args[1] != "server" && args[1] != "client") {
        eprintln!("usage: interop-rust server|client CASES.json");
        std::process::exit(2);
    }
    let mut text = String::new();
    std::fs::File::open(&args[2])
        .and_then(|mut f| f.read_to_string(&mut text))
        .unwrap_or_else(|e| {
            eprintln!("{}: {e}", args[2]);
            std::process::exit(2)
        });
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("cases: {e}");
        std::process::exit(2)
    });
    if args[1] == "server" {
        serve(cases);
    } else {
        for case in &cases {
            emit(&dial(case));
        }
    }
}
