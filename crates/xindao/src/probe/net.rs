//! The probe's connection, one timed step at a time: DNS, TCP connect, an HTTP proxy's CONNECT, the TLS
//! handshake (with the certificate chain it presented). Each step is done by hand rather than by an HTTP client
//! library so that each can be timed on its own and its failure named.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use x509_cert::der::Decode;

use super::ProbeError;

/// Longest proxy CONNECT answer head read.
const MAX_PROXY_HEAD: usize = 16 * 1024;

/// Where the probe goes: `http(s)://` or `ws(s)://` host, port and base path.
#[derive(Debug, Clone)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path before `/v1/...`, without a trailing slash (empty at the root).
    pub base: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, ProbeError> {
        let url = url::Url::parse(url).map_err(|e| ProbeError::Url(e.to_string()))?;
        let tls = match url.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => return Err(ProbeError::Url(format!("unsupported scheme {other}"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| ProbeError::Url("no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ProbeError::Url("no port".into()))?;
        Ok(Target {
            tls,
            host,
            port,
            base: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` as in a Host header or a CONNECT line.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An HTTP proxy reached with CONNECT.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value, from `http://user:password@host:port`.
    pub authorization: Option<String>,
}

impl Proxy {
    pub fn parse(url: &str) -> Result<Proxy, ProbeError> {
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let url =
            url::Url::parse(&with_scheme).map_err(|e| ProbeError::Url(format!("proxy: {e}")))?;
        if url.scheme() != "http" {
            return Err(ProbeError::Url(
                "proxy: only http:// proxies (CONNECT)".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ProbeError::Url("proxy: no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let authorization = (!url.username().is_empty()).then(|| {
            let pair = format!("{}:{}", url.username(), url.password().unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Proxy {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            authorization,
        })
    }

    /// The proxy named by `--proxy`, else by `HTTPS_PROXY` (`HTTP_PROXY` for a plain target), unless
    /// `NO_PROXY` names the target's host (or is `*`).
    pub fn for_target(flag: Option<&str>, target: &Target) -> Result<Option<Proxy>, ProbeError> {
        if let Some(flag) = flag {
            return Proxy::parse(flag).map(Some);
        }
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        let names: &[&str] = if target.tls {
            &["HTTPS_PROXY", "https_proxy"]
        } else {
            &["HTTP_PROXY", "http_proxy"]
        };
        let Some(url) = env(names) else {
            return Ok(None);
        };
        if let Some(no_proxy) = env(&["NO_PROXY", "no_proxy"]) {
            let bypass = no_proxy.split(',').map(str::trim).any(|entry| {
                entry == "*"
                    || (!entry.is_empty()
                        && (target.host == entry.trim_start_matches('.')
                            || target
                                .host
                                .ends_with(&format!(".{}", entry.trim_start_matches('.')))))
            });
            if bypass {
                return Ok(None);
            }
        }
        Proxy::parse(&url).map(Some)
    }
}

/// A byte stream the probe speaks HTTP and WebSocket over (plain TCP or TLS, maybe through a proxy).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// One certificate of the chain the server presented.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names of the subject alternative names.
    pub names: Vec<String>,
    pub not_after: String,
    pub expires_in_days: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub version: String,
    pub alpn: Option<String>,
    pub chain: Vec<CertInfo>,
}

/// The timed steps of one connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connected {
    /// The host resolved: the proxy's when there is one (the proxy resolves the target).
    pub resolved: String,
    pub addresses: Vec<String>,
    pub dns_ms: f64,
    pub tcp_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_connect_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
}

pub fn ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The TLS client configuration: webpki roots, the system's roots, and `ca_file`'s certificates (PEM).
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>, ProbeError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ProbeError::Tls(format!("{}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| ProbeError::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| ProbeError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: a WebSocket upgrade is an HTTP/1.1 exchange.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens a connection to `target` (through `proxy`), timing each step.
pub async fn connect(
    target: &Target,
    proxy: Option<&Proxy>,
    tls: &Arc<ClientConfig>,
) -> Result<(Stream, Connected), ProbeError> {
    let (host, port) = match proxy {
        Some(proxy) => (proxy.host.as_str(), proxy.port),
        None => (target.host.as_str(), target.port),
    };
    let mut connected = Connected {
        resolved: format!("{host}:{port}"),
        ..Connected::default()
    };
    let started = Instant::now();
    let addresses: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ProbeError::Dns(format!("{host}: {e}")))?
        .collect();
    connected.dns_ms = ms(started.elapsed());
    connected.addresses = addresses.iter().map(ToString::to_string).collect();
    let started = Instant::now();
    let mut last_error = None;
    let mut tcp = None;
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(error) => last_error = Some(format!("{address}: {error}")),
        }
    }
    let mut tcp = tcp.ok_or_else(|| {
        ProbeError::Tcp(last_error.unwrap_or_else(|| format!("{host}: no address")))
    })?;
    connected.tcp_ms = ms(started.elapsed());
    let _ = tcp.set_nodelay(true);
    if let Some(proxy) = proxy {
        let started = Instant::now();
        proxy_connect(&mut tcp, target, proxy).await?;
        connected.proxy_connect_ms = Some(ms(started.elapsed()));
    }
    if !target.tls {
        return Ok((Box::new(tcp), connected));
    }
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| ProbeError::Tls(format!("{}: {e}", target.host)))?;
    let started = Instant::now();
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    connected.tls_ms = Some(ms(started.elapsed()));
    let session = stream.get_ref().1;
    connected.tls = Some(TlsInfo {
        version: session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        chain: session
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(cert_info)
            .collect(),
    });
    Ok((Box::new(stream), connected))
}

/// `CONNECT target` through an HTTP proxy; anything but a 2xx answer is an error naming the proxy's status.
async fn proxy_connect(
    tcp: &mut TcpStream,
    target: &Target,
    proxy: &Proxy,
) -> Result<(), ProbeError> {
    let authority = target.authority();
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(authorization) = &proxy.authorization {
        request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeError::Proxy(e.to_string()))?;
    // Byte by byte: what follows the head belongs to the tunnel (the TLS handshake), not to us.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD {
            return Err(ProbeError::Proxy("CONNECT answer head too long".into()));
        }
        let byte = tcp
            .read_u8()
            .await
            .map_err(|e| ProbeError::Proxy(format!("CONNECT answer: {e}")))?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        return Err(ProbeError::Proxy(format!("CONNECT refused: {status_line}")));
    }
    Ok(())
}

fn cert_info(der: &CertificateDer<'_>) -> CertInfo {
    let Ok(cert) = x509_cert::Certificate::from_der(der.as_ref()) else {
        return CertInfo {
            subject: "(unparsable certificate)".into(),
            issuer: String::new(),
            names: Vec::new(),
            not_after: String::new(),
            expires_in_days: 0,
        };
    };
    let tbs = &cert.tbs_certificate;
    let names = tbs
        .get::<x509_cert::ext::pkix::SubjectAltName>()
        .ok()
        .flatten()
        .map(|(_, san)| {
            san.0
                .iter()
                .filter_map(|name| match name {
                    x509_cert::ext::pkix::name::GeneralName::DnsName(dns) => Some(dns.to_string()),
                    x509_cert::ext::pkix::name::GeneralName::IpAddress(ip) => {
                        ip_name(ip.as_bytes())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let not_after = tbs.validity.not_after;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let expires = not_after.to_unix_duration().as_secs() as i64;
    CertInfo {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        names,
        not_after: not_after.to_string(),
        expires_in_days: (expires - now).div_euclid(86_400),
    }
}

fn ip_name(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(format!("ip:{ip}"))
}
