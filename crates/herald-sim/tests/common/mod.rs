//! Helpers for the simulator's HTTP tests: a plain hyper-util client, request bodies, polling
//! with a deadline, and a tiny webhook receiver. Each test binary uses a different subset.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub(crate) use herald_sim::{SimConfig, SimHandle};

/// One answer, fully read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// `(code, error_subcode)` of a Graph error answer.
    pub(crate) fn graph_error(&self) -> (u64, Option<u64>) {
        let body = self.json();
        let error = &body["error"];
        assert!(error["message"].is_string(), "{body}");
        assert!(error["type"].is_string(), "{body}");
        assert!(error["fbtrace_id"].is_string(), "{body}");
        (
            error["code"].as_u64().expect("code"),
            error["error_subcode"].as_u64(),
        )
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1 client.
#[derive(Clone)]
pub(crate) struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub(crate) fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub(crate) async fn request(&self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let response = self.0.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub(crate) async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Reply {
        let request = Request::post(url)
            .header("content-type", content_type)
            .body(Full::new(body.into()))
            .unwrap();
        self.request(request).await.expect("request")
    }

    pub(crate) async fn post_json(&self, url: &str, body: &Value) -> Reply {
        self.post(url, "application/json", serde_json::to_vec(body).unwrap())
            .await
    }

    pub(crate) async fn get(&self, url: &str) -> Reply {
        let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        self.request(request).await.expect("request")
    }
}

/// A valid text send to `psid`.
pub(crate) fn text_to(psid: &str) -> Value {
    json!({"recipient": {"id": psid}, "messaging_type": "UPDATE", "message": {"text": "Hi there"}})
}

/// `{sim}/v25.0/{page}/messages?access_token={token}`.
pub(crate) fn send_url(sim: &SimHandle, page: &str, token: &str) -> String {
    format!("{}/v25.0/{page}/messages?access_token={token}", sim.url())
}

pub(crate) async fn start(config: SimConfig) -> SimHandle {
    herald_sim::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Polls `condition` every 10 ms until it holds; panics after `timeout`.
pub(crate) async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut condition: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A webhook receiver on 127.0.0.1: records every POST; answers 500 to the first `fail_first`.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) posts: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let posts: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = Arc::clone(&posts);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let mut posts = seen.lock().unwrap();
                        posts.push(Received {
                            headers: parts.headers,
                            body,
                        });
                        let status = if posts.len() <= fail_first {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(b"EVENT_RECEIVED")));
                        *response.status_mut() = status;
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, posts }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    pub(crate) fn posts(&self) -> Vec<Received> {
        self.posts.lock().unwrap().clone()
    }
}
