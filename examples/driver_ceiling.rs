//! The live driver's request ceiling on one core, for `benches/driver/run.sh`.
//!
//! `--serve ADDR` answers every request with a fixed small JSON body, so that
//! the server costs as little as possible and the figure is the client's.
//! `--drive URL` runs closed-loop GETs through the driver's own client
//! (`kfsim::live::http::Http`) and prints one `RESULT driver ...` line.
//!
//!   cargo run --release --example driver_ceiling -- --serve 127.0.0.1:18090
//!   cargo run --release --example driver_ceiling -- --drive http://127.0.0.1:18090/ --connections 64 --duration 10

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kfsim::live::http::Http;

const BODY: &[u8] = br#"{"errcode":0,"errmsg":"ok"}"#;
const ENDPOINT: &str = "ceiling";
const WARMUP: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(about = "The live driver's HTTP request ceiling against a trivial endpoint")]
struct Args {
    /// Serve the trivial endpoint on this address.
    #[arg(long, value_name = "ADDR", conflicts_with = "drive")]
    serve: Option<SocketAddr>,
    /// Drive this URL (`http://host:port/path`) with the driver's client.
    #[arg(long, value_name = "URL", required_unless_present = "serve")]
    drive: Option<String>,
    /// Concurrent closed-loop callers, each keeping one connection busy.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time [s], after a 1 s warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // One core for either side, like wrk -t1 and the pinned server.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match (args.serve, args.drive) {
        (Some(addr), _) => rt.block_on(serve(addr)),
        (None, Some(url)) => {
            // The client keeps at most 256 idle connections per host: more callers
            // would open and close connections and measure connect costs instead.
            if args.connections == 0 || args.connections > 256 {
                bail!("--connections must be 1..=256");
            }
            let duration = Duration::try_from_secs_f64(args.duration)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--duration must be a positive number of seconds")?;
            rt.block_on(drive(&url, args.connections, duration))
        }
        (None, None) => unreachable!("clap requires --serve or --drive"),
    }
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    eprintln!("serving on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        // Small requests and answers: waiting for Nagle would only add latency.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(BODY)))
                        .expect("a valid response"),
                )
            });
            // A client closing its connection at the end of a run is not an error worth reporting.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn drive(url: &str, connections: usize, duration: Duration) -> Result<()> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let authority = uri.authority().context("the URL needs a host")?;
    let base = format!("{}://{authority}", uri.scheme_str().unwrap_or("http"));
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();

    let http = Http::new(&base, Duration::from_secs(5));
    http.get(ENDPOINT, &path).await.map_err(|e| anyhow::anyhow!("{url} does not answer: {e:?}"))?;

    let path: Arc<str> = path.into();
    // The callers run until the runtime is dropped on return.
    for _ in 0..connections {
        let (http, path) = (http.clone(), path.clone());
        tokio::spawn(async move {
            loop {
                // Errors are counted by the client's own statistics.
                let _ = http.get(ENDPOINT, &path).await;
            }
        });
    }

    // Only the client's statistics are read, and they cannot be reset: the
    // warm-up (connections opening, caches filling) is taken out by
    // subtracting a snapshot of its histogram.
    tokio::time::sleep(WARMUP).await;
    let (before, errors_before) = (histogram(&http)?, http.stats.errors());
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let (mut window, errors) = (histogram(&http)?, http.stats.errors() - errors_before);
    let elapsed = start.elapsed().as_secs_f64();
    window.subtract(&before).context("the histogram shrank")?;

    let ms = |q: f64| window.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "RESULT driver requests/s={:.0} p50_ms={:.3} p99_ms={:.3} errors={errors}",
        window.len() as f64 / elapsed,
        ms(0.50),
        ms(0.99),
    );
    Ok(())
}

/// Latency [µs] of every call so far, failed ones included, as wrk counts them.
fn histogram(http: &Http) -> Result<Histogram<u64>> {
    let (_, mut hists) = http.stats.finish();
    hists.remove(&format!("http.{ENDPOINT}")).context("no calls recorded")
}
