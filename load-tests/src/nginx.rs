//! nginx configurations (b) and (c): an mTLS reverse proxy to the upstream with one worker
//! and a keep-alive upstream pool; (c) adds a bearer-header check and a JSON access log.
//!
//! Everything nginx writes (pid, logs, temp files) stays in the run's own directory; the
//! configuration is passed with `-p <dir> -c <file> -e <error log> -g 'daemon off;'`, so the
//! system nginx and its files are never touched.

use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConf {
    /// The run directory: pid file, error log, temp paths.
    pub dir: String,
    /// Port on 127.0.0.1 to listen on.
    pub port: u16,
    /// The upstream, `host:port` (plain HTTP).
    pub upstream: String,
    /// Server certificate (PEM).
    pub cert: String,
    /// Server key (PEM).
    pub key: String,
    /// CA bundle for client certificates (PEM).
    pub client_ca: String,
    /// (c): answer 401 unless `Authorization` starts with `Bearer `.
    pub bearer_check: bool,
    /// (c): write a JSON access log line per request to this file.
    pub access_log: Option<String>,
    /// `user` directive, needed when the master runs as root (workers otherwise run as
    /// `nobody` and cannot write into the run directory).
    pub user: Option<String>,
}

/// The `nginx.conf` text for `conf`.
pub fn render(conf: &NginxConf) -> String {
    let dir = conf.dir.trim_end_matches('/');
    let mut out = String::new();
    if let Some(user) = &conf.user {
        let _ = writeln!(out, "user {user};");
    }
    let _ = write!(
        out,
        "worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 8192;

events {{
    worker_connections 4096;
    multi_accept on;
}}

http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
"
    );
    match &conf.access_log {
        Some(file) => {
            let _ = write!(
                out,
                "    log_format json escape=json '{{\"time\":\"$time_iso8601\",\"remote\":\"$remote_addr\",\"client\":\"$ssl_client_s_dn\",\"method\":\"$request_method\",\"uri\":\"$request_uri\",\"status\":$status,\"bytes\":$body_bytes_sent,\"request_time\":$request_time,\"upstream_time\":\"$upstream_response_time\"}}';
    access_log {file} json;
"
            );
        }
        None => out.push_str("    access_log off;\n"),
    }
    let _ = write!(
        out,
        "
    upstream backend {{
        server {upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}

    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;

        location / {{
",
        upstream = conf.upstream,
        port = conf.port,
        cert = conf.cert,
        key = conf.key,
        ca = conf.client_ca,
    );
    if conf.bearer_check {
        out.push_str(
            "            if ($http_authorization !~ \"^Bearer \") {
                return 401;
            }
",
        );
    }
    out.push_str(
        "            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
}
",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> NginxConf {
        NginxConf {
            dir: "/tmp/lt/nginx-b/".into(),
            port: 40001,
            upstream: "127.0.0.1:40000".into(),
            cert: "/tmp/lt/certs/server.pem".into(),
            key: "/tmp/lt/certs/server-key.pem".into(),
            client_ca: "/tmp/lt/certs/ca.pem".into(),
            bearer_check: false,
            access_log: None,
            user: None,
        }
    }

    #[test]
    fn plain_proxy_has_one_worker_mtls_and_a_keepalive_pool() {
        let text = render(&conf());
        assert!(text.starts_with("worker_processes 1;\npid /tmp/lt/nginx-b/nginx.pid;"));
        assert!(text.contains("listen 127.0.0.1:40001 ssl"));
        assert!(text.contains("ssl_verify_client on;"));
        assert!(text.contains("server 127.0.0.1:40000;\n        keepalive 64;"));
        assert!(text.contains("proxy_set_header Connection \"\";"));
        assert!(text.contains("access_log off;"));
        assert!(!text.contains("http_authorization"));
        assert!(!text.contains("daemon"), "daemon off is passed with -g");
        // Braces balance.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn checked_proxy_rejects_missing_bearer_and_logs_json() {
        let text = render(&NginxConf {
            bearer_check: true,
            access_log: Some("/tmp/lt/nginx-c/access.log".into()),
            user: Some("root".into()),
            ..conf()
        });
        assert!(text.starts_with("user root;\n"));
        assert!(
            text.contains(
                "if ($http_authorization !~ \"^Bearer \") {\n                return 401;"
            )
        );
        assert!(text.contains("access_log /tmp/lt/nginx-c/access.log json;"));
        assert!(text.contains("log_format json escape=json '{\"time\":\"$time_iso8601\""));
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }
}
