//! A scripted HTTP/1.1 server on 127.0.0.1:0: one request per connection, answered by a
//! closure, every request recorded (with its body, a chunked one decoded).

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body (a chunked one decoded).
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (the first, by case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    truncated: bool,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            truncated: false,
        }
    }
    pub fn ok(body: Vec<u8>) -> Self {
        Self::status(200).body(body)
    }
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    /// Close the connection after the body even if Content-Length promised more.
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }
}

pub struct MockServer {
    pub addr: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut tmp).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let first = lines.next().unwrap_or_default();
                    let mut parts = first.split(' ');
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| {
                            l.split_once(':')
                                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        })
                        .collect();
                    let header = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    };
                    let chunked = header("transfer-encoding")
                        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                    let content_length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut rest = buf.split_off(head_end + 4);
                    let body = if chunked {
                        // chunked transfer coding: `SIZE\r\nDATA\r\n` … `0\r\n\r\n`
                        let mut body = Vec::new();
                        loop {
                            let line_end = loop {
                                if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                                    break i;
                                }
                                match sock.read(&mut tmp).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => rest.extend_from_slice(&tmp[..n]),
                                }
                            };
                            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
                            let size = usize::from_str_radix(
                                size_text.split(';').next().unwrap_or("").trim(),
                                16,
                            )
                            .unwrap_or(0);
                            while rest.len() < line_end + 2 + size + 2 {
                                match sock.read(&mut tmp).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => rest.extend_from_slice(&tmp[..n]),
                                }
                            }
                            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                            rest.drain(..line_end + 2 + size + 2);
                            if size == 0 {
                                break body;
                            }
                        }
                    } else {
                        while rest.len() < content_length {
                            match sock.read(&mut tmp).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => rest.extend_from_slice(&tmp[..n]),
                            }
                        }
                        rest.truncate(content_length);
                        rest
                    };
                    let req = Request {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let reply = handler(&req);
                    log.lock().unwrap().push(req);
                    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    let has_len = reply
                        .headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
                    for (k, v) in &reply.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    if !has_len {
                        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
                    }
                    out.push_str("\r\n");
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.write_all(&reply.body).await;
                    let _ = sock.flush().await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}
