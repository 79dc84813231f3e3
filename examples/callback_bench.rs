//! What WeCom's callbacks cost the reference service, for
//! `benches/callbacks/run.sh`: customer messages per second on one core
//! without callbacks, then the same load with an encrypted, signed
//! `kf_msg_or_event` callback per message to a trivial receiver, and the
//! callbacks delivered per second.
//!
//! The service runs alone on one thread (a current-thread runtime); the
//! closed-loop driver and the receiver share another. Traffic stays on
//! loopback.
//!
//!   cargo run --release --example callback_bench -- --duration 10

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kfsim::service::crypto::CallbackCrypto;
use kfsim::service::push::{CallbackFaults, CallbackSettings};
use kfsim::service::{Config, Options, Service, State, SystemClock, serve};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Customer messages per second with and without kf_msg_or_event callbacks")]
struct Args {
    /// Measured time of each run [s], after a 1 s warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent closed-loop batch callers.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Customer messages per batch.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Callbacks out at once (`kfsim serve --callback-max-in-flight`); more
    /// owed are coalesced.
    #[arg(long, default_value_t = 64)]
    in_flight: u32,
}

const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

/// A receiver that answers every callback at once and counts them.
async fn receiver(count: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"success"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/cb")
}

/// Start the service on its own thread and one core; its address.
fn start_service(callback: Option<CallbackSettings>) -> (std::net::SocketAddr, Service) {
    let mut st = State::new(Config { sync_log_cap: 1_000_000, pending_cap: 1_000_000, ..Config::default() });
    st.get_token("kfsim", "kfsim-secret", kfsim::service::faults::Caller::Client, 0).ok();
    let rule = kfsim::service::state::Rule { api_managed: true, ..Default::default() };
    st.account_add("bench", "", Some(rule), 0).unwrap();
    let svc = Service::new(st, Arc::new(SystemClock), Options { callbacks: callback, ..Options::default() });
    let (tx, rx) = std::sync::mpsc::channel();
    let s = svc.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = serve(listener, s, std::future::pending()).await;
        });
    });
    (rx.recv().unwrap(), svc)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(client: &HttpClient, url: &str, body: &Value) -> Value {
    let req = hyper::Request::post(url).body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = client.request(req).await.unwrap();
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// Drive customer messages for the measured time; messages accepted per s.
async fn drive(base: String, args: &Args) -> f64 {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let token = {
        let url = format!("{base}/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret");
        let resp = client.request(hyper::Request::get(url).body(Full::default()).unwrap()).await.unwrap();
        let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    };
    let list =
        post(&client, &format!("{base}/cgi-bin/kf/account/list?access_token={token}"), &json!({})).await;
    let kf = list["account_list"][0]["open_kfid"].as_str().unwrap().to_owned();
    let url = |p: &str| format!("{base}{p}?access_token={token}");
    let opened = post(&client, &url("/sim/customer/open_channel"), &json!({"queue_cap": 1000})).await;
    let channel = opened["channel_id"].as_str().unwrap().to_owned();
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (client, url, kf, channel) =
            (client.clone(), url("/sim/customer/batch"), kf.clone(), channel.clone());
        let (accepted, stop, batch) = (accepted.clone(), stop.clone(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let actions: Vec<Value> = (0..batch)
                    .map(|i| {
                        n += 1;
                        json!({"type": "message", "customer": format!("c{c}-{}", (n + i as u64) % 2000),
                               "open_kfid": kf, "msgtype": "text", "text": {"content": "hello"}})
                    })
                    .collect();
                let v = post(&client, &url, &json!({"channel_id": channel, "actions": actions})).await;
                let ok =
                    v["results"].as_array().map_or(0, |r| r.iter().filter(|r| r["errcode"] == 0).count());
                accepted.fetch_add(ok as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (from, started) = (accepted.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let rate = (accepted.load(Ordering::Relaxed) - from) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    rate
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // without callbacks
    let (addr, _) = start_service(None);
    let plain = rt.block_on(drive(format!("http://{addr}"), &args));
    // with callbacks: one per message while fewer than --in-flight are out
    let received = Arc::new(AtomicU64::new(0));
    let url = rt.block_on(receiver(received.clone()));
    let settings = CallbackSettings {
        url,
        crypto: CallbackCrypto::new("kfsimToken", KEY, "kfsim")?,
        corpid: "kfsim".into(),
        timeout: Duration::from_secs(5),
        retries: 3,
        retry_delay: Duration::ZERO,
        max_in_flight: args.in_flight,
        faults: CallbackFaults::default(),
    };
    let (addr, svc) = start_service(Some(settings));
    let stats = svc.callback_stats().unwrap();
    let before = stats.delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    let with = rt.block_on(drive(format!("http://{addr}"), &args));
    let delivered = stats.delivered.load(Ordering::Relaxed) - before;
    let callbacks_per_s = delivered as f64 / started.elapsed().as_secs_f64();
    let coalesced = svc.with_state(|st, _| st.figures().counters.callbacks_coalesced);
    println!(
        "RESULT callbacks plain_msgs_per_s={plain:.0} with_callbacks_msgs_per_s={with:.0} ratio={:.2} callbacks_delivered_per_s={callbacks_per_s:.0} coalesced={coalesced} received={}",
        with / plain,
        received.load(Ordering::Relaxed)
    );
    Ok(())
}
