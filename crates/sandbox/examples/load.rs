//! A quick load check of the sandbox: the server on one thread, a keep-alive HTTP/1.1 client
//! on another, and the server thread's CPU time per request.
//!
//! ```text
//! cargo run --release -p gateway-sandbox --example load -- [connections] [seconds] [path]
//! ```
//!
//! `path` defaults to `/crm/customers/{id}/tags` with ids cycling through every customer; give
//! e.g. `/sandbox/health` for the bare-hyper floor. Linux only (reads `/proc/thread-self`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_sandbox::Controls;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let path = args.next();

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> std::io::Result<f64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        gateway_sandbox::data::warm();
        let before = thread_cpu_seconds();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            gateway_sandbox::serve(listener, Arc::new(Controls::new()), async {
                let _ = stopped.await;
            })
            .await;
            Ok::<_, std::io::Error>(())
        })?;
        Ok(thread_cpu_seconds() - before)
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let mut clients = Vec::new();
        for c in 0..connections {
            let (done, count, path) = (done.clone(), count.clone(), path.clone());
            clients.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                let mut n = c as u32;
                while !done.load(Ordering::Relaxed) {
                    let uri = match &path {
                        Some(p) => p.clone(),
                        None => format!("/crm/customers/C{:06}/tags", n % 2000 + 1),
                    };
                    n = n.wrapping_add(connections as u32);
                    let request = Request::get(uri)
                        .header("host", "sandbox")
                        .body(Empty::<Bytes>::new())?;
                    let mut response = sender.send_request(request).await?;
                    while let Some(frame) = response.body_mut().frame().await {
                        frame?;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        done.store(true, Ordering::Relaxed);
        for client in clients {
            if let Ok(Err(e)) = client.await {
                eprintln!("client error: {e}");
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let server_cpu = server.join().map_err(|_| "server thread panicked")??;
    let requests = count.load(Ordering::Relaxed) as f64;
    println!(
        "{connections} connections, {seconds} s: {:.0} req/s, server CPU {:.2} µs per request",
        requests / elapsed,
        server_cpu * 1e6 / requests
    );
    Ok(())
}

/// CPU time of the calling thread, from `/proc/thread-self/stat` (clock ticks of 10 ms).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
