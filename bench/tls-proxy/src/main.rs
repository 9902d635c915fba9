//! AWS endpoints as a deployed function meets them, for `scripts/bench`: TLS with a
//! chain shaped like AWS's (RSA-2048 root, intermediate, leaf) in front of a plain-HTTP upstream (the
//! emulator, through the bench's counting proxy), behind a network delay.
//!
//! `tls-proxy UPSTREAM_HOST:PORT RTT_MS ENDPOINTS CA_FILE KEYS_DIR` takes RSA keys in
//! PKCS #8 PEM from KEYS_DIR (`root.pem`, `intermediate.pem`, `leaf.pem`: tls_bench makes
//! them with `openssl genpkey` at every run, since rcgen on ring cannot), writes the root's PEM to
//! CA_FILE (the functions get it as `AWS_CA_BUNDLE`, the peers as `AWS_CA_BUNDLE` and
//! `NODE_EXTRA_CA_CERTS`), listens on ENDPOINTS loopback ports (one per service: each
//! is its own pool entry, as DynamoDB's and KMS's host names are), prints
//! `port port ...` and serves until killed.
//!
//! Each port delays every byte by RTT/2 each way (and a client's first bytes by one
//! more round trip, TCP's handshake), so connecting costs what it costs on a network,
//! then hands the stream to the TLS terminator, which
//! forwards plaintext to UPSTREAM. The delay runs on plain threads: tokio's timer
//! counts whole milliseconds, too coarse for a 2 ms round trip.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CidrSubnet, DnType, GeneralSubtree, IsCa, KeyPair,
    NameConstraints,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, upstream, rtt_ms, endpoints, ca_file, keys] = args.as_slice() else {
        eprintln!("usage: tls-proxy UPSTREAM_HOST:PORT RTT_MS ENDPOINTS CA_FILE KEYS_DIR");
        std::process::exit(2);
    };
    let one_way = Duration::from_secs_f64(rtt_ms.parse::<f64>().expect("RTT_MS is a number") / 2000.0);
    let endpoints: usize = endpoints.parse().expect("ENDPOINTS is a count");
    let (config, root_pem) = tls_config(std::path::Path::new(keys));
    std::fs::write(ca_file, root_pem).expect("CA_FILE is writable");

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let terminator = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a loopback port");
    let terminator_address = terminator.local_addr().expect("its address");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let upstream = upstream.clone();
    runtime.spawn(async move {
        while let Ok((stream, _)) = terminator.accept().await {
            stream.set_nodelay(true).ok();
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                plain.set_nodelay(true).ok();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });

    let mut ports = Vec::new();
    for _ in 0..endpoints {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        ports.push(listener.local_addr().expect("its address").port().to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(terminator_address) else { continue };
                for stream in [&client, &server] {
                    stream.set_nodelay(true).ok();
                }
                // The kernel completes the client's TCP handshake at once; holding its
                // first bytes for one more round trip puts them where a network would.
                let accepted = Instant::now();
                delayed(&client, &server, one_way, accepted + 2 * one_way);
                delayed(&server, &client, one_way, accepted);
            }
        });
    }
    println!("{}", ports.join(" "));
    std::io::stdout().flush().ok();
    loop {
        std::thread::park();
    }
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived (or after
/// `not_before`, if later), in order.
fn delayed(from: &TcpStream, to: &TcpStream, delay: Duration, not_before: Instant) {
    let (mut from, mut to) = (from.try_clone().expect("a socket"), to.try_clone().expect("a socket"));
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            if sender.send((Instant::now().max(not_before) + delay, buffer[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in receiver {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        to.shutdown(Shutdown::Write).ok();
    });
}

/// A root, an intermediate and a leaf for 127.0.0.1 and localhost, with RSA-2048 keys as
/// AWS endpoints' certificates have; the server sends leaf and intermediate, as AWS
/// endpoints do.
fn tls_config(keys: &std::path::Path) -> (rustls::ServerConfig, String) {
    let key = |name: &str| {
        let pem =
            std::fs::read_to_string(keys.join(name)).expect("KEYS_DIR holds root.pem, intermediate.pem, leaf.pem");
        KeyPair::from_pem(&pem).expect("an RSA key in PKCS #8")
    };
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
    };
    // A root that somehow got trusted beyond the bench must vouch for nothing but loopback.
    let mut root = ca("Bench Root CA");
    root.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 1], [255, 255, 255, 255])),
            GeneralSubtree::DnsName("localhost".to_owned()),
        ],
        excluded_subtrees: Vec::new(),
    });
    let root = CertifiedIssuer::self_signed(root, key("root.pem")).expect("root");
    let intermediate =
        CertifiedIssuer::signed_by(ca("Bench Intermediate CA"), key("intermediate.pem"), &root).expect("intermediate");
    let leaf_key = key("leaf.pem");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("parameters")
        .signed_by(&leaf_key, &intermediate)
        .expect("leaf");
    let chain = vec![CertificateDer::from(leaf.der().to_vec()), intermediate.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the certificate");
    (config, root.pem())
}
