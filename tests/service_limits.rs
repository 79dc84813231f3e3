//! The reference service against hostile or unlucky clients (issue 17):
//! slow and idle connections, unauthenticated bodies, bad framing, a
//! shutdown while a request is half sent, and overflowing parameters.
//! Traffic goes only to loopback; every wait is bounded by a guard that
//! only keeps a regression from hanging the suite.

mod service_util;

use std::sync::Arc;
use std::time::Duration;

use kfsim::service::{Config, Options, ServeLimits, Service, State, SystemClock, serve_with};
use serde_json::{Value, json};
use service_util::{Server, account, batch, channel, say};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Far longer than anything below should take.
const GUARD: Duration = Duration::from_secs(20);

/// Read until the peer closes (or `GUARD`): what was read, and whether it
/// closed.
async fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

/// Read one HTTP answer's head and the start of its body (or `GUARD`).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(GUARD, async {
        while !String::from_utf8_lossy(&out).contains("errcode") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `serve_with` a fresh service on a loopback port under `limits`: its
/// address, the shutdown trigger and the server task.
async fn start(
    limits: ServeLimits,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let svc = Service::new(State::new(Config::default()), Arc::new(SystemClock), Options::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    (addr, tx, tokio::spawn(serve_with(listener, svc, shutdown, limits)))
}

/// Issue 17, item 5: a connection that trickles its headers, or sends
/// nothing at all, was held forever. It is closed after the header-read
/// timeout (1 s here).
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let (addr, tx, server) =
        start(ServeLimits { header_read: Duration::from_secs(1), ..Default::default() }).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /cgi-bin/kf/account/list HTTP/1.1\r\nHo").await.unwrap();
    let (_, idle_closed) = read_to_close(&mut idle).await;
    let (_, slow_closed) = read_to_close(&mut slow).await;
    assert!(idle_closed, "an idle connection is closed");
    assert!(slow_closed, "a connection with a half-sent head is closed");
    // the service still answers others
    let mut c = service_util::Client::connect(addr).await;
    assert_eq!(c.get("/healthz").await.0, 200);
    let _ = tx.send(());
    tokio::time::timeout(GUARD, server).await.expect("stopped").unwrap().unwrap();
}

/// A client that pipelines requests and never reads the answers filled
/// its socket's buffers, and the connection then waited on a write for
/// ever, holding its socket: enough of them ran the service out of file
/// descriptors (found by probing with hostile clients). Writes that make
/// no progress for the limit (1 s here) close the connection; a client
/// that reads keeps it.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_closed() {
    let (addr, tx, server) =
        start(ServeLimits { write_stall: Duration::from_secs(1), ..Default::default() }).await;
    // megabytes of answers asked for, none read: far past the socket buffers
    let mut greedy = TcpStream::connect(addr).await.unwrap();
    let requests = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(5000);
    let (mut rd, mut wr) = greedy.split();
    let sent = tokio::time::timeout(GUARD, wr.write_all(&requests)).await;
    assert!(sent.is_ok(), "the requests were taken (or refused): {sent:?}");
    let started = std::time::Instant::now();
    // the server gives up on its writes: reading now finds the connection
    // reset or closed after what was buffered
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(GUARD, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed ({:?} after the requests)", started.elapsed());
    // the service still answers others
    let mut c = service_util::Client::connect(addr).await;
    assert_eq!(c.get("/healthz").await.0, 200);
    let _ = tx.send(());
    tokio::time::timeout(GUARD, server).await.expect("stopped").unwrap().unwrap();
}

/// A client that sends a whole request and then shuts down its write half
/// (`nc -N`, some load tools) got no answer one time in five: hyper took
/// the end of its input, when it came before the answer was written, for a
/// client gone, and dropped the connection. 50 such clients at once each
/// get their whole answer: quick calls on the hot path and through the
/// router, and long-polls whose answer comes 300 ms after the end of input
/// (before, 43 of the 50 went unanswered here).
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_is_answered() {
    let (addr, tx, server) = start(ServeLimits::default()).await;
    let mut c = service_util::Client::connect(addr).await;
    let token = c.login().await;
    let ch = channel(&mut c).await;
    let post = |path: &str, body: String| {
        format!(
            "POST {path}?access_token={token} HTTP/1.1\r\nhost: x\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let requests = [
        post("/cgi-bin/kf/account/list", "{}".to_owned()),
        "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(),
        post("/sim/customer/pull", json!({"channel_id": ch, "timeout_ms": 300}).to_string()),
    ];
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let request = requests[i % requests.len()].clone();
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(request.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
                let (answer, closed) = read_to_close(&mut s).await;
                let answer = String::from_utf8_lossy(&answer).into_owned();
                // whole only if the JSON that ends the answer parses
                let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                let whole = answer.starts_with("HTTP/1.1 200") && serde_json::from_str::<Value>(body).is_ok();
                (whole && closed, request.lines().next().unwrap_or_default().to_owned(), answer)
            })
        })
        .collect();
    let mut unanswered = Vec::new();
    for client in clients {
        let (whole, request, answer) = client.await.unwrap();
        if !whole {
            unanswered.push((request, answer));
        }
    }
    let first: Vec<_> = unanswered.iter().take(3).collect();
    assert!(unanswered.is_empty(), "{} of 50 got no whole answer, e.g. {first:?}", unanswered.len());
    let _ = tx.send(());
    tokio::time::timeout(GUARD, server).await.expect("stopped").unwrap().unwrap();
}

/// Half-closing is no way to hold a connection: one that shuts down its
/// write half with no request, part of a head, or part of a body is closed
/// at once, long before the header-read timeout (10 minutes here).
#[tokio::test]
async fn a_client_that_half_closes_without_a_whole_request_is_closed_at_once() {
    let (addr, tx, server) =
        start(ServeLimits { header_read: Duration::from_secs(600), ..Default::default() }).await;
    let mut c = service_util::Client::connect(addr).await;
    let token = c.login().await;
    let partial_body = format!(
        "POST /cgi-bin/kf/account/add?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"na"
    );
    for (what, sent) in [
        ("nothing", String::new()),
        ("part of a head", "POST /cgi-bin/kf/account/list HTTP/1.1\r\nHo".to_owned()),
        ("part of a body", partial_body),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(sent.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let started = std::time::Instant::now();
        let (answer, closed) = read_to_close(&mut s).await;
        assert!(closed && started.elapsed() < Duration::from_secs(5), "{what}: held {:?}", started.elapsed());
        if what == "part of a body" {
            // the head was whole: it is answered, as a body that broke off
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer:?}");
        }
    }
    let _ = tx.send(());
    tokio::time::timeout(GUARD, server).await.expect("stopped").unwrap().unwrap();
}

/// Issue 17, item 6: a client holding a half-sent request kept `serve`
/// from returning after the shutdown signal. It returns once the grace
/// period is over.
#[tokio::test]
async fn shutdown_is_bounded_whatever_the_clients_do() {
    let (addr, tx, server) = start(ServeLimits {
        header_read: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut c = service_util::Client::connect(addr).await;
    let token = c.login().await;
    // a head, then half of the body it announces
    let mut half = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /cgi-bin/kf/account/add?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"na"
    );
    half.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = tx.send(());
    let stopped = tokio::time::timeout(GUARD, server).await;
    assert!(stopped.is_ok(), "serve returned although a request was half sent");
}

/// Issue 17, item 5: the token was checked after the body was read, so
/// anyone could make the service buffer 1 MiB per request. An
/// unauthenticated request is answered from its head alone.
#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let server = Server::empty().await;
    for path in ["/cgi-bin/kf/account/add", "/sim/customer/batch", "/sim/customer/pull"] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {path}?access_token=forged HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // the rest of the body never comes
        let answer = read_answer(&mut s).await;
        assert!(answer.contains("40014"), "{path}: answered without the body: {answer:?}");
    }
    server.stop().await.unwrap();
}

/// Issue 17, item 14: a malformed chunked body was answered 413 ("larger
/// than 1 MiB"). It is a bad request: 400.
#[tokio::test]
async fn a_malformed_chunked_body_is_a_bad_request() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    let token = c.login().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "POST /cgi-bin/kf/account/add?access_token={token} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(!answer.contains("1 MiB"), "{answer:?}");
    server.stop().await.unwrap();
}

/// Issue 17, item 12: `prefer_last_within_s` was multiplied into µs
/// without a check; a huge window overflowed and routed a returning
/// customer as if it had no last agent. A huge window means "always".
#[tokio::test]
async fn a_huge_prefer_last_window_keeps_the_last_agent() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let rule = json!({"policy": "round_robin", "prefer_last_agent": true, "prefer_last_within_s": 18446744073710u64});
    let kf = account(&mut c, "kf", &["s1", "s2"], 1, rule).await;
    let ch = channel(&mut c).await;
    let first = batch(&mut c, &ch, vec![say("c", &kf, "m1", "hello")]).await;
    let agent = first[0]["servicer_userid"].as_str().unwrap().to_owned();
    let ext = first[0]["external_userid"].as_str().unwrap().to_owned();
    let end = json!({"servicer_userid": agent, "open_kfid": kf, "external_userid": ext});
    c.ok("/sim/servicer/end", end).await;
    // round robin alone would pick the other servicer
    let again = batch(&mut c, &ch, vec![say("c", &kf, "m2", "again")]).await;
    assert_eq!(again[0]["servicer_userid"], Value::from(agent.as_str()), "{again:?}");
    server.stop().await.unwrap();
}

const T0: u64 = 1_700_000_000_000_000;

/// Issue 17, item 2: a killed driver's channel kept its customers'
/// sessions, and so its servicers' slots, for ever (the next run was
/// answered nothing). A channel nobody pulls from or sends on for its
/// lease (60 s) is closed: its sessions end, the slots free up. One in use
/// stays.
#[tokio::test]
async fn a_channel_nobody_uses_expires_and_frees_its_sessions() {
    let clock = Arc::new(kfsim::service::ManualClock::new(T0));
    let server = Server::start(State::new(Config::default()), clock.clone(), Options::default()).await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "kf", &["s1", "s2"], 1, json!({})).await;
    let dead = channel(&mut c).await;
    let alive = channel(&mut c).await;
    let r = batch(&mut c, &dead, vec![say("a", &kf, "1", "x")]).await;
    assert_eq!(r[0]["service_state"], 3, "{r:?}");
    let r = batch(&mut c, &alive, vec![say("b", &kf, "2", "y")]).await;
    assert_eq!(r[0]["service_state"], 3, "{r:?}");
    let held = |v: &Value| {
        v["servicer_list"].as_array().unwrap().iter().map(|s| s["sessions"].as_u64().unwrap()).sum::<u64>()
    };
    clock.advance(50_000_000);
    c.ok("/sim/customer/pull", json!({"channel_id": alive, "cursor": ""})).await;
    clock.advance(11_000_000);
    server.svc.with_state(|st, now| st.sweep(now, 1000));
    let (_, list) = c.get(&format!("/cgi-bin/kf/servicer/list?open_kfid={kf}")).await;
    assert_eq!(held(&list), 1, "only the live channel's session is held: {list}");
    let gone = c.post("/sim/customer/pull", json!({"channel_id": dead, "cursor": ""})).await;
    assert_eq!(gone["errcode"], 40058, "{gone}");
    c.ok("/sim/customer/pull", json!({"channel_id": alive, "cursor": ""})).await;
    let (_, bytes) = c.raw("GET", "/metrics", Vec::new()).await;
    assert!(String::from_utf8_lossy(&bytes).contains("kfsim_channels_expired_total 1"));
    server.stop().await.unwrap();
}

/// A client naming ever new customers grew the service without bound
/// (about 1 KB each) until the retention forgot them. Past
/// `max_customers` the action that would remember a new one is refused
/// alone with 45009, the rest of its batch runs (a known customer still
/// writes), `/metrics` counts it, and once the retention forgets idle
/// customers a new one is taken again.
#[tokio::test]
async fn new_customers_beyond_the_cap_are_refused_item_by_item() {
    let clock = Arc::new(kfsim::service::ManualClock::new(T0));
    let cfg = Config {
        max_customers: 3,
        idle_end_us: 10_000_000,
        retention_us: 20_000_000,
        channel_lease_us: u64::MAX,
        ..Config::default()
    };
    let server = Server::start(State::new(cfg), clock.clone(), Options::default()).await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "kf", &["s1"], 10, json!({})).await;
    let ch = channel(&mut c).await;
    let actions: Vec<Value> = ["a", "b", "c", "d", "a"]
        .iter()
        .enumerate()
        .map(|(i, who)| say(who, &kf, &i.to_string(), "x"))
        .collect();
    let v = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": actions})).await;
    let codes: Vec<i64> =
        v["results"].as_array().unwrap().iter().map(|r| r["errcode"].as_i64().unwrap()).collect();
    assert_eq!(codes, [0, 0, 0, 45009, 0], "{v}");
    let (_, bytes) = c.raw("GET", "/metrics", Vec::new()).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains("kfsim_customers_refused_total 1"), "{text}");
    assert!(text.contains("kfsim_customers 3"), "{text}");
    // the sessions end idle, then the retention forgets them and their customers
    clock.advance(11_000_000);
    server.svc.with_state(|st, now| st.sweep(now, 1000));
    clock.advance(30_000_000);
    server.svc.with_state(|st, now| st.sweep(now, 1000));
    let r = batch(&mut c, &ch, vec![say("d", &kf, "5", "late")]).await;
    assert_eq!(r[0]["service_state"], 3, "{r:?}");
    server.stop().await.unwrap();
}

/// Found by probing with hostile clients: a pull refused a cursor by
/// writing it back in the errmsg, however long (up to the 1 MiB body), and
/// took cursors the service never gives (`c+1`). Both pulls refuse such a
/// cursor with 40058, as `sync_msg` does, in a few words of their own.
#[tokio::test]
async fn pulls_refuse_cursors_they_never_gave_without_echoing_them() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "kf", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("a", &kf, "1", "x")]).await;
    let long = format!("c{}", "f".repeat(500_000));
    for cursor in ["c+1", "c01", long.as_str()] {
        for (path, queue) in [
            ("/sim/customer/pull", json!({"channel_id": ch})),
            ("/sim/servicer/pull", json!({"servicer_userid": "s1"})),
        ] {
            let mut body = queue;
            body["cursor"] = json!(cursor);
            let v = c.post(path, body).await;
            let msg = v["errmsg"].as_str().unwrap();
            assert_eq!(v["errcode"], 40058, "{path} {cursor:.20}: {msg:.200}");
            assert!(msg.contains("cursor") && msg.len() < 120 && !msg.contains(cursor), "{path}: {msg:.200}");
        }
    }
    server.stop().await.unwrap();
}

/// A cursor the service never gave was taken when it was well formed and
/// inside the queue: `c2` after pages that gave `c0` then `c3`. WeCom's
/// SDKs send back only the `next_cursor` they got; a cursor made up, or
/// given by another queue, is 40058 `invalid cursor` on `sync_msg` and on
/// both pulls, and the cursors given keep working.
#[tokio::test]
async fn a_cursor_never_given_is_refused_inside_the_queue_too() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "kf", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    // the channel gets a note per customer, the servicer a's session
    let says = ["a", "a", "b", "c"].iter().enumerate().map(|(i, who)| say(who, &kf, &i.to_string(), "x"));
    let says = says.collect();
    batch(&mut c, &ch, says).await;
    let queues = [
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf})),
        ("/cgi-bin/kf/sync_msg", json!({})),
        ("/sim/servicer/pull", json!({"servicer_userid": "s1"})),
        ("/sim/customer/pull", json!({"channel_id": ch})),
    ];
    let mut given = Vec::new();
    for (path, queue) in &queues {
        let mut body = queue.clone();
        body["limit"] = json!(1);
        let first = c.ok(path, body.clone()).await["next_cursor"].as_str().unwrap().to_owned();
        body["cursor"] = json!(first);
        body["limit"] = json!(2);
        let next = c.ok(path, body.clone()).await["next_cursor"].as_str().unwrap().to_owned();
        // the pages gave the cursors of items 1 and 3; item 2's was never given
        let prefix = if next.starts_with("all") { "allc" } else { "c" };
        assert!(next.starts_with(&format!("{prefix}3")), "{path}: {next}");
        for bad in [next.replacen("c3", "c2", 1), format!("{prefix}2")] {
            body["cursor"] = json!(bad);
            let v = c.post(path, body.clone()).await;
            assert_eq!(v["errcode"], 40058, "{path} {bad}: {v}");
            assert!(v["errmsg"].as_str().unwrap().starts_with("invalid cursor"), "{path} {bad}: {v}");
        }
        body["cursor"] = json!(next);
        c.ok(path, body).await;
        given.push(next);
    }
    // each queue's cursor on the other queues
    for (i, (path, queue)) in queues.iter().enumerate() {
        for (j, cursor) in given.iter().enumerate().filter(|&(j, _)| j != i) {
            let mut body = queue.clone();
            body["cursor"] = json!(cursor);
            let v = c.post(path, body).await;
            assert_eq!(v["errcode"], 40058, "{path} with the cursor of {}: {v}", queues[j].0);
        }
    }
    server.stop().await.unwrap();
}

/// Issue 17, item 10: two accounts with one name made duplicate series
/// in `/metrics`. Each account's series carry its open_kfid.
#[tokio::test]
async fn accounts_sharing_a_name_have_their_own_series() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let one = account(&mut c, "kf", &[], 1, json!({})).await;
    let two = account(&mut c, "kf", &[], 1, json!({})).await;
    assert_ne!(one, two);
    let (_, bytes) = c.raw("GET", "/metrics", Vec::new()).await;
    let text = String::from_utf8(bytes).unwrap();
    let series: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
    let unique: std::collections::HashSet<&&str> = series.iter().collect();
    assert_eq!(unique.len(), series.len(), "duplicate series in\n{text}");
    for kf in [&one, &two] {
        assert!(text.contains(&format!("kfsim_servicers{{open_kfid=\"{kf}\",account=\"kf\"}} 0")), "{text}");
    }
    server.stop().await.unwrap();
}

/// Issue 17, item 5: with the default soft limit of open files (256 on
/// some systems), a few hundred idle sockets locked every other client
/// out. `kfsim serve` raises its soft limit to the hard one.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_files_limit() {
    let hard = std::process::Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -Sn 256 && exec \"{}\" serve --addr 127.0.0.1:0", env!("CARGO_BIN_EXE_kfsim")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let mut soft = String::new();
    let comm = format!("/proc/{}/comm", child.id());
    for _ in 0..100 {
        // the shell's own limits first, kfsim's after the exec
        if !std::fs::read_to_string(&comm).unwrap_or_default().starts_with("kfsim") {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let text = std::fs::read_to_string(&limits).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("Max open files")) {
            soft = line.split_whitespace().nth(3).unwrap_or_default().to_owned();
            if soft != "256" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, if hard == "unlimited" { "unlimited".to_owned() } else { hard }, "the soft limit");
}

/// The head of an answer, lowercased, read from `s` (or `GUARD`).
async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(GUARD, async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).to_lowercase()
}

/// An answer given before the request's body was read (a refused token, an
/// unknown path, a GET with a body, a body too large) left hyper unable to
/// keep the connection: it closed it after the answer unless the rest of
/// the body had already come, and said nothing, so a keep-alive client
/// sent its next request into a closed socket (found by probing: 40 % of
/// the calls after a refused token failed). A body that is small and on
/// its way is read and dropped, and the connection kept; any other answer
/// left without its body says `connection: close`.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_the_connection_closes() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    let token = c.login().await;
    let cases = [
        // the hot paths, served without the router
        ("POST", "/cgi-bin/kf/sync_msg?access_token=forged".to_owned(), "40014"),
        ("POST", "/cgi-bin/kf/send_msg".to_owned(), "41001"),
        ("POST", "/sim/customer/batch?access_token=forged".to_owned(), "40014"),
        ("POST", "/sim/servicer/pull?access_token=forged".to_owned(), "40014"),
        // the router's
        ("POST", "/cgi-bin/kf/account/add?access_token=forged".to_owned(), "40014"),
        ("POST", "/cgi-bin/media/upload?access_token=forged&type=file".to_owned(), "40014"),
        ("POST", "/nowhere".to_owned(), "40058"),
        ("PUT", "/cgi-bin/kf/send_msg".to_owned(), "40058"),
        ("GET", "/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret".to_owned(), "access_token"),
        ("GET", "/healthz".to_owned(), "ok"),
    ];
    for (method, path, want) in cases {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // the head and the start of the body; the rest would come later
        let head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{");
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_answer(&mut s).await.to_lowercase();
        assert!(answer.contains(want), "{method} {path}: {answer:?}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{method} {path}: {answer:?}");
    }
    // a body too large by its head, and one that is too large once read
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /cgi-bin/kf/sync_msg?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("http/1.1 413") && answer.contains("connection: close"), "{answer:?}");
    // a refused request sent whole keeps its connection, as do answers that
    // read their bodies
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for (method, path) in [
        ("POST", "/cgi-bin/kf/sync_msg?access_token=forged"),
        ("POST", "/sim/customer/pull"),
        ("POST", "/cgi-bin/kf/account/add?access_token=forged"),
        ("POST", "/nowhere"),
        ("GET", "/healthz"),
    ] {
        let req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}");
        s.write_all(req.as_bytes()).await.unwrap();
        let answer = read_answer(&mut s).await.to_lowercase();
        assert!(answer.contains("errcode"), "{path}: {answer:?}");
        assert!(!answer.contains("connection: close"), "{path}: {answer:?}");
    }
    for _ in 0..3 {
        for path in ["/cgi-bin/kf/sync_msg", "/cgi-bin/kf/account/list"] {
            let req = format!(
                "POST {path}?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let answer = read_answer(&mut s).await.to_lowercase();
            assert!(answer.starts_with("http/1.1 200") && answer.contains("\"errcode\":0"), "{answer:?}");
            assert!(!answer.contains("connection: close"), "{path}: {answer:?}");
        }
    }
    server.stop().await.unwrap();
}

/// The head of a `media/upload` of a multipart body of `len` bytes
/// (boundary `XX`).
fn upload_head(token: &str, len: usize) -> String {
    format!(
        "POST /cgi-bin/media/upload?access_token={token}&type=file HTTP/1.1\r\nhost: x\r\n\
         content-type: multipart/form-data; boundary=XX\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// A media upload's body was read with no time limit: a client that sent
/// part of it and then nothing held its request (and socket) for ever.
/// It has the time any body has (1 s here), then HTTP 408. And an upload
/// read to its end keeps the connection: the parts after `media`, and the
/// closing boundary, are read too.
#[tokio::test]
async fn a_media_upload_has_the_time_any_body_has_and_keeps_its_connection() {
    let options = Options { body_read: Some(Duration::from_secs(1)), ..Options::default() };
    let server =
        service_util::Server::start(State::new(Config::default()), Arc::new(SystemClock), options).await;
    let mut c = server.client().await;
    let token = c.login().await;
    let part = "--XX\r\ncontent-disposition: form-data; name=\"media\"; filename=\"a.bin\"\r\n\
                content-type: application/octet-stream\r\n\r\n0123456789";
    let head = |len: usize| upload_head(&token, len);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("{}{part}", head(100_000)).as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let answer = read_answer(&mut s).await.to_lowercase();
    assert!(answer.starts_with("http/1.1 408") && answer.contains("40058"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    let body = format!(
        "{part}\r\n--XX\r\ncontent-disposition: form-data; name=\"note\"\r\n\r\nafter the file\r\n--XX--\r\n"
    );
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        s.write_all(format!("{}{body}", head(body.len())).as_bytes()).await.unwrap();
        let answer = read_answer(&mut s).await.to_lowercase();
        assert!(answer.contains("\"errcode\":0") && answer.contains("media_id"), "{answer:?}");
        assert!(!answer.contains("connection: close"), "{answer:?}");
    }
    server.stop().await.unwrap();
}

/// Each body's limit (1 MiB) did not bound the service's memory: clients
/// that each sent most of a body and waited held a megabyte apiece, 4 GB
/// for 4000 of them. Bodies being received share one budget (2 MiB here),
/// taken as their bytes arrive: bodies announced and not sent hold none of
/// it (when the announced length was taken, 512 idle connections shut
/// every other body out: found by probing); past it a request is refused
/// at once (HTTP 503, errcode -1, the connection closed), and once the
/// holders go, requests pass again.
#[tokio::test]
async fn bodies_held_at_once_share_one_budget() {
    let options = Options { body_budget: Some(2 << 20), ..Options::default() };
    let server =
        service_util::Server::start(State::new(Config::default()), Arc::new(SystemClock), options).await;
    let mut c = server.client().await;
    let token = c.login().await;
    let post = |len: usize| {
        format!(
            "POST /cgi-bin/kf/sync_msg?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    // two bodies of 1 MiB announced, a little of each sent
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(format!("{}{}", post(1 << 20), " ".repeat(1000)).as_bytes()).await.unwrap();
        holders.push(s);
    }
    // a new connection with a body of 4 KiB: its answer and the stream
    let small = || {
        let (addr, req) = (server.addr, format!("{}{{}}{}", post(4096), " ".repeat(4094)));
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            (read_answer(&mut s).await.to_lowercase(), s)
        }
    };
    for _ in 0..10 {
        let (answer, _) = small().await;
        assert!(answer.contains("\"errcode\":0"), "bodies announced, not sent, hold no budget: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the holders send all but 1 KiB of their bodies: 2 MiB − 2 KiB held
    for s in &mut holders {
        s.write_all(" ".repeat((1 << 20) - 1000 - 1024).as_bytes()).await.unwrap();
    }
    // the holders' bytes are read in their own tasks: wait until they are in
    let refused = tokio::time::timeout(GUARD, async {
        loop {
            let (answer, mut s) = small().await;
            if answer.starts_with("http/1.1 503") {
                return (answer, read_to_close(&mut s).await.1);
            }
            assert!(answer.contains("\"errcode\":0"), "{answer:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a request past the budget is refused");
    assert!(
        refused.0.contains("\"errcode\":-1") && refused.0.contains("connection: close"),
        "{:?}",
        refused.0
    );
    assert!(refused.1, "the refused connection is closed");
    drop(holders);
    tokio::time::timeout(GUARD, async {
        while !small().await.0.contains("\"errcode\":0") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the budget comes back when the holders go");
    server.stop().await.unwrap();
}

/// A media upload took its largest body (20 MiB and 64 KiB) of the budget
/// before any byte came: 36 idle uploads shut out every other body (found
/// by probing). It now takes its bytes as they come, like any body: idle
/// uploads hold nothing, and one whose bytes pass the budget (2 MiB here)
/// is refused there (HTTP 503, errcode -1, the connection closed).
#[tokio::test]
async fn a_media_upload_takes_the_budget_as_its_bytes_come() {
    let options = Options { body_budget: Some(2 << 20), ..Options::default() };
    let server =
        service_util::Server::start(State::new(Config::default()), Arc::new(SystemClock), options).await;
    let mut c = server.client().await;
    let token = c.login().await;
    let part = "--XX\r\ncontent-disposition: form-data; name=\"media\"; filename=\"a.bin\"\r\n\
                content-type: application/octet-stream\r\n\r\n";
    let head = |len: usize| upload_head(&token, len);
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(format!("{}{part}0123", head(10 << 20)).as_bytes()).await.unwrap();
        idle.push(s);
    }
    let json = format!(
        "POST /cgi-bin/kf/sync_msg?access_token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    for _ in 0..10 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(json.as_bytes()).await.unwrap();
        let answer = read_answer(&mut s).await.to_lowercase();
        assert!(answer.contains("\"errcode\":0"), "idle uploads hold no budget: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(idle);
    // 3 MiB of file against a budget of 2 MiB
    let file = "x".repeat(3 << 20);
    let body = format!("{part}{file}\r\n--XX--\r\n");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // the service may close before all of it is written
    let _ = s.write_all(format!("{}{body}", head(body.len())).as_bytes()).await;
    let (answer, closed) = read_to_close(&mut s).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 503") && answer.contains("\"errcode\":-1"), "{answer:?}");
    assert!(closed && answer.contains("connection: close"), "{answer:?}");
    server.stop().await.unwrap();
}

/// A connection's read buffer holds a request head: at hyper's default,
/// about 400 KB a connection, thousands of clients each sending most of a
/// head held gigabytes. The buffer now stops at 64 KiB and one read past
/// it: a head of 60 KiB is served, one of 160 KiB refused (HTTP 431).
#[tokio::test]
async fn a_request_head_is_bounded_by_a_64_kib_buffer() {
    let (addr, stop, task) = start(ServeLimits::default()).await;
    let head = |filler: usize| {
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n", "a".repeat(filler))
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head(60 << 10).as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(GUARD, s.read(&mut buf)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    // the server may close before all of it is written
    let _ = s.write_all(head(160 << 10).as_bytes()).await;
    let (answer, closed) = read_to_close(&mut s).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
