//! A notification receiver: the HTTP endpoint an InfluxDB notification rule posts to, recording
//! every notification so a test can count them per incident (issue 12: an on-call engineer is
//! paged once per incident, never by the database that does not own scheduled work).
//!
//! It answers every request 204 and keeps the body as JSON (a body that is not JSON is kept as a
//! string), with the time it arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One notification as received.
#[derive(Debug, Clone)]
pub struct Notification {
    pub path: String,
    pub body: Value,
    /// When it arrived, Unix seconds.
    pub at: f64,
}

/// A running receiver; dropping it stops it.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Notification>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the notification receiver");
        let addr: SocketAddr = listener.local_addr().expect("receiver address");
        let got: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let store = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let store = store.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let store = store.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let bytes =
                                req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                                Value::String(String::from_utf8_lossy(&bytes).into_owned())
                            });
                            let at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
                            store.lock().unwrap_or_else(|p| p.into_inner()).push(Notification {
                                path,
                                body,
                                at,
                            });
                            let answer = Response::builder().status(204).body(Empty::<Bytes>::new());
                            Ok::<_, Infallible>(answer.unwrap_or_default())
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { url: format!("http://{addr}/notify"), got, task }
    }

    /// Every notification received so far, in arrival order.
    pub fn received(&self) -> Vec<Notification> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_post_is_recorded_with_its_body() {
        let r = Receiver::start().await;
        let client = reqwest::Client::new();
        for body in [r#"{"_check_name":"hot","_source_timestamp":1}"#, "not json"] {
            let status = client.post(&r.url).body(body).send().await.unwrap().status();
            assert_eq!(status.as_u16(), 204);
        }
        let got = r.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, "/notify");
        assert_eq!(got[0].body["_check_name"], "hot");
        assert_eq!(got[1].body, Value::String("not json".into()));
    }
}
