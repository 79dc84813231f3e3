//! Helpers of the service tests: an in-process server on 127.0.0.1:0 and a
//! small keep-alive HTTP/1.1 client. Traffic goes only to loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kfsim::service::{Clock, Config, Options, Service, State, SystemClock, serve};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub svc: Service,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serve `state` on a free loopback port.
    pub async fn start(state: State, clock: Arc<dyn Clock>, options: Options) -> Server {
        let svc = Service::new(state, clock, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, svc.clone(), async move {
            let _ = rx.await;
        }));
        Server { addr, svc, stop: Some(tx), handle: Some(handle) }
    }

    /// An empty service with the default credentials and the system clock.
    pub async fn empty() -> Server {
        Server::start(State::new(Config::default()), Arc::new(SystemClock), Options::default()).await
    }

    /// Stop, and wait until `serve` has returned.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.expect("serve task")
    }

    /// A new client connection.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// One keep-alive connection.
pub struct Client {
    tx: http1::SendRequest<Full<Bytes>>,
    host: String,
    /// Appended to every path as `access_token=`, when set.
    pub token: Option<String>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        assert!(addr.ip().is_loopback(), "tests talk to loopback only");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (tx, conn) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        Client { tx, host: addr.to_string(), token: None }
    }

    fn path(&self, path: &str) -> String {
        match &self.token {
            Some(t) if !path.contains("access_token=") => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}access_token={t}")
            }
            _ => path.to_owned(),
        }
    }

    /// Any request; the status and the raw body.
    pub async fn raw(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let (status, _, body) = self.request(method, path, "application/json", body).await;
        (status, body)
    }

    /// Any request with a content type; the status, the answer's content
    /// type and its body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        self.tx.ready().await.expect("connection ready");
        let req = hyper::Request::builder()
            .method(method)
            .uri(self.path(path))
            .header("host", &self.host)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.tx.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, bytes.to_vec())
    }

    /// POST JSON; the status and the JSON answer.
    pub async fn post_status(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let (status, bytes) = self.raw("POST", path, body.to_string().into_bytes()).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {bytes:?}")),
        )
    }

    /// POST JSON, expecting HTTP 200; the JSON answer.
    pub async fn post(&mut self, path: &str, body: Value) -> Value {
        let (status, v) = self.post_status(path, &body).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// POST JSON, expecting errcode 0.
    pub async fn ok(&mut self, path: &str, body: Value) -> Value {
        let v = self.post(path, body).await;
        assert_eq!(v["errcode"], 0, "{path}: {v}");
        v
    }

    /// GET; the status and the JSON answer.
    pub async fn get(&mut self, path: &str) -> (u16, Value) {
        let (status, bytes) = self.raw("GET", path, Vec::new()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: not JSON ({e})")))
    }

    /// Get a token with the default credentials and use it from now on.
    pub async fn login(&mut self) -> String {
        let (status, v) = self.get("/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret").await;
        assert_eq!((status, v["errcode"].as_i64()), (200, Some(0)), "{v}");
        let t = v["access_token"].as_str().unwrap().to_owned();
        self.token = Some(t.clone());
        t
    }
}

/// Create an account with servicers (cap each) and return its open_kfid.
pub async fn account(c: &mut Client, name: &str, servicers: &[&str], cap: u32, rule: Value) -> String {
    let kf =
        c.ok("/cgi-bin/kf/account/add", json!({"name": name, "media_id": "m", "reception_rule": rule})).await;
    let kf = kf["open_kfid"].as_str().unwrap().to_owned();
    if !servicers.is_empty() {
        let r = c
            .ok(
                "/cgi-bin/kf/servicer/add",
                json!({"open_kfid": kf, "userid_list": servicers, "max_concurrent": cap}),
            )
            .await;
        for item in r["result_list"].as_array().unwrap() {
            assert_eq!(item["errcode"], 0, "{r}");
        }
    }
    kf
}

/// Open a customer channel.
pub async fn channel(c: &mut Client) -> String {
    c.ok("/sim/customer/open_channel", json!({})).await["channel_id"].as_str().unwrap().to_owned()
}

/// A text message action.
pub fn say(customer: &str, kf: &str, client_msgid: &str, text: &str) -> Value {
    json!({"type": "message", "customer": customer, "open_kfid": kf, "client_msgid": client_msgid,
           "msgtype": "text", "text": {"content": text}})
}

/// Run one customer batch and return its results, each expected to succeed.
pub async fn batch(c: &mut Client, channel: &str, actions: Vec<Value>) -> Vec<Value> {
    let v = c.ok("/sim/customer/batch", json!({"channel_id": channel, "actions": actions})).await;
    let results = v["results"].as_array().unwrap().clone();
    for r in &results {
        assert_eq!(r["errcode"], 0, "{r}");
    }
    results
}
