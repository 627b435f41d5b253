//! The shaped link of the test proxy (`common::proxy::Link`): each shape holds within a few
//! per cent, measured through real sockets on 127.0.0.1 against a small HTTP server of this
//! test's own, one shape at a time (the machine's two cores are not shared with another).

mod common;

use common::proxy::{Faults, Link, Proxy};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// An HTTP/1.1 server on 127.0.0.1 that answers `GET /N` with N bytes and `PUT` (its body
/// read) with nothing, on kept-alive connections; it lives as long as the test process.
fn server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    port
}

fn serve(s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let body = vec![7u8; 1 << 20];
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut sink = vec![0u8; length];
        if r.read_exact(&mut sink).is_err() {
            return;
        }
        let n: usize = match line.split_whitespace().nth(1) {
            Some(p) if line.starts_with("GET") => p[1..].parse().unwrap(),
            _ => 0,
        };
        if write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").is_err() {
            return;
        }
        let mut left = n;
        while left > 0 {
            let k = left.min(body.len());
            if w.write_all(&body[..k]).is_err() {
                return;
            }
            left -= k;
        }
    }
}

/// A kept-alive client connection.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn to(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Sends a request (a PUT with `body` bytes, else a GET of `n` bytes) and reads its
    /// response whole; returns how long that took.
    fn ask(&mut self, n: usize, body: usize) -> Duration {
        let start = Instant::now();
        match body {
            0 => write!(self.w, "GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap(),
            _ => {
                write!(
                    self.w,
                    "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: {body}\r\n\r\n"
                )
                .unwrap();
                self.w.write_all(&vec![1u8; body]).unwrap();
            }
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut got = vec![0u8; length];
        self.r.read_exact(&mut got).unwrap();
        start.elapsed()
    }
}

/// `n` bytes fetched over each of `connections` connections at once; the time until the
/// last is done.
fn fetch_at_once(port: u16, connections: usize, n: usize) -> Duration {
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| std::thread::spawn(move || Client::to(port).ask(n, 0)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    start.elapsed()
}

/// `got` is `want` within `below` and `above` (fractions of it). A rate may run ahead by the
/// proxy's slack (20 ms) at the start.
fn within(what: &str, got: Duration, want: Duration, below: f64, above: f64) {
    let ratio = got.as_secs_f64() / want.as_secs_f64();
    assert!(
        (1.0 - below..=1.0 + above).contains(&ratio),
        "{what}: {got:?} where {want:?} is the shape ({ratio:.3})"
    );
}

const MB: u64 = 1_000_000;

/// One test at a time: they measure time, on two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn each_shape_of_the_link_holds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = server();
    let proxy = Proxy::start(upstream, 7);
    let shape = |link: Link| {
        proxy.set(Faults {
            link,
            ..Default::default()
        })
    };

    // Time to first byte: once per request, a GET before its body, a PUT after its body.
    shape(Link {
        first_byte: Duration::from_millis(100),
        ..Default::default()
    });
    let mut c = Client::to(proxy.port);
    let mut times: Vec<Duration> = (0..10).map(|_| c.ask(1000, 0)).collect();
    times.sort();
    within(
        "first byte of a GET",
        times[5],
        Duration::from_millis(100),
        0.0,
        0.05,
    );
    within(
        "a 4 MB GET",
        c.ask(4 << 20, 0),
        Duration::from_millis(100),
        0.0,
        0.3,
    );
    within(
        "a 4 MB PUT",
        c.ask(0, 4 << 20),
        Duration::from_millis(100),
        0.0,
        0.3,
    );

    // A rate per connection, each way.
    shape(Link {
        per_connection: Some(10 * MB),
        ..Default::default()
    });
    let mut c = Client::to(proxy.port);
    within(
        "10 MB down at 10 MB/s",
        c.ask(10_000_000, 0),
        Duration::from_secs(1),
        0.03,
        0.04,
    );
    within(
        "5 MB up at 10 MB/s",
        c.ask(0, 5_000_000),
        Duration::from_millis(500),
        0.03,
        0.06,
    );
    // Connections do not share it.
    within(
        "4 × 5 MB at 10 MB/s each",
        fetch_at_once(proxy.port, 4, 5_000_000),
        Duration::from_millis(500),
        0.03,
        0.08,
    );

    // A rate over all connections together (the NIC), and both at once.
    shape(Link {
        total: Some(20 * MB),
        ..Default::default()
    });
    within(
        "8 × 2.5 MB at 20 MB/s in all",
        fetch_at_once(proxy.port, 8, 2_500_000),
        Duration::from_secs(1),
        0.03,
        0.05,
    );
    shape(Link {
        per_connection: Some(4 * MB),
        total: Some(20 * MB),
        ..Default::default()
    });
    within(
        "2 × 2 MB at 4 MB/s each",
        fetch_at_once(proxy.port, 2, 2_000_000),
        Duration::from_millis(500),
        0.03,
        0.08,
    );
    within(
        "8 × 2.5 MB at 20 MB/s in all",
        fetch_at_once(proxy.port, 8, 2_500_000),
        Duration::from_secs(1),
        0.03,
        0.05,
    );

    // Stalls: a share of requests held, and counted; the others are not.
    shape(Link {
        stalls: 0.25,
        stall: Duration::from_millis(300),
        ..Default::default()
    });
    let before = proxy.counters().stalls.load(Ordering::SeqCst);
    let mut c = Client::to(proxy.port);
    let times: Vec<Duration> = (0..40).map(|_| c.ask(1000, 0)).collect();
    let held = times
        .iter()
        .filter(|t| **t >= Duration::from_millis(300))
        .count() as u64;
    assert!(
        times
            .iter()
            .all(|t| *t < Duration::from_millis(100) || *t >= Duration::from_millis(300)),
        "{times:?}"
    );
    assert_eq!(
        held,
        proxy.counters().stalls.load(Ordering::SeqCst) - before
    );
    assert!((3..=20).contains(&held), "{held} of 40 held at 25%");
}

/// The proxy counts requests in flight: from a request's first byte to its response's last,
/// at most and integrated over time.
#[test]
fn requests_in_flight_are_counted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = server();
    let proxy = Proxy::start(upstream, 8);
    proxy.set(Faults {
        link: Link {
            first_byte: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    });
    let counters = proxy.counters();
    let before = counters.in_flight_ns_now();
    let took = fetch_at_once(proxy.port, 6, 1000);
    let integral = counters.in_flight_ns_now() - before;
    assert_eq!(counters.max_in_flight.load(Ordering::SeqCst), 6);
    // Each of the 6 was in flight for its time to first byte, at least.
    let each = integral as f64 / 6.0 / 1e9;
    assert!(
        (0.2..took.as_secs_f64() + 0.01).contains(&each),
        "{each} s each over {took:?}"
    );
    // Once the clients are gone, so are their requests.
    let start = Instant::now();
    while counters.in_flight.load(Ordering::SeqCst) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "requests still in flight"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
