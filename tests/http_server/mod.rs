//! A tiny HTTP/1.1 server on 127.0.0.1 for webhook tests: records every
//! request (method, path, query, headers, body) and answers with a canned
//! response chosen by a handler. One thread per connection; `Connection: close`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Raw query string (after `?`), empty when none.
    pub query: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Send the body chunked (no Content-Length).
    pub chunked: bool,
}

impl Response {
    pub fn json(status: u16, v: serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            delay: Duration::ZERO,
            chunked: false,
        }
    }

    pub fn text(status: u16, s: &str) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: s.as_bytes().to_vec(),
            delay: Duration::ZERO,
            chunked: false,
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Start on 127.0.0.1:0; `handler` picks the answer for each request.
    /// The accept thread lives until the test process exits.
    pub fn start<F>(handler: F) -> Server
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test HTTP server");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let reqs = reqs.clone();
                let handler = handler.clone();
                std::thread::spawn(move || serve(conn, &reqs, &*handler));
            }
        });
        Server { addr, requests }
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, reqs: &Mutex<Vec<Request>>, handler: &dyn Fn(&Request) -> Response) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut rd = BufReader::new(conn.try_clone().expect("clone stream"));
    let Some(req) = read_request(&mut rd) else {
        return;
    };
    reqs.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    if !resp.delay.is_zero() {
        std::thread::sleep(resp.delay);
    }
    let mut w = conn;
    let mut head = format!(
        "HTTP/1.1 {} Canned\r\nContent-Type: {}\r\nConnection: close\r\n",
        resp.status, resp.content_type
    );
    if resp.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let _ = w.write_all(head.as_bytes());
        for part in resp.body.chunks(4096) {
            let _ = write!(w, "{:x}\r\n", part.len());
            let _ = w.write_all(part);
            let _ = w.write_all(b"\r\n");
        }
        let _ = w.write_all(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&resp.body);
    }
    let _ = w.flush();
}

fn read_request(rd: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    rd.read_line(&mut line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}
